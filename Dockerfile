# The operator image: `domig operator` as a non-root user on a read-only root filesystem.
# scripts/build-image.sh builds and checks it here; elsewhere `docker build .` or `podman build .`.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc pkg-config libvirt-dev \
    && rm -rf /var/lib/apt/lists/*
# All that domig runs goes into one venv, copied whole into the runtime stage, so no wheel file,
# compiler or pip reaches a layer of the image.
RUN python -m venv --without-pip /opt/domig
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
# kubernetes >= 35 ships an asyncio client beside the one domig uses: a third of the venv, never
# imported (kopf speaks to the API server through aiohttp itself).
RUN pip --python /opt/domig/bin/python install --no-cache-dir '.[libvirt]' \
    && rm -rf /opt/domig/lib/python3.11/site-packages/kubernetes/aio

FROM python:3.11-slim-bookworm
# libvirt0 is the client library libvirt-python loads; apt-get clean because not every base
# image's apt throws its downloaded packages away.
RUN apt-get update && apt-get install -y --no-install-recommends libvirt0 \
    && apt-get clean && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 domig && useradd --uid 10001 --gid 10001 --no-create-home domig
COPY --from=build /opt/domig /opt/domig
ENV PATH=/opt/domig/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 9090
ENTRYPOINT ["domig"]
CMD ["operator"]
