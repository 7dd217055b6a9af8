# The operator image: `domig operator` as a non-root user on a read-only root filesystem.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc pkg-config libvirt-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[libvirt]'

FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends libvirt0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 domig && useradd --uid 10001 --gid 10001 --no-create-home domig
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
EXPOSE 8080 9090
ENTRYPOINT ["domig"]
CMD ["operator"]
