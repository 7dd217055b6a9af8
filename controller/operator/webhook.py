"""Serving the admission webhook with kopf: on loopback for development, behind a Service in a cluster.

kopf serves the webhook and keeps the `ValidatingWebhookConfiguration` named `domig.dev` pointing
at it (its "managed" mode), with the CA bundle of the certificate made here.
"""

from __future__ import annotations

import asyncio
import base64
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from controller.operator.certificates import KeyPair, self_signed
from controller.operator.kube import Kube

CONFIGURATION = "domig.dev"
SECRET = "domig-webhook-tls"


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--webhook-listen: expected HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class ServiceWebhookServer(kopf.WebhookServer):
    """kopf's server, announced to the API server as a Service rather than a URL."""

    def __init__(self, *, namespace: str, name: str, service_port: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.service = kopf.WebhookClientConfigService(namespace=namespace, name=name, port=service_port, path="")

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in super().__call__(fn):
            yield kopf.WebhookClientConfig(caBundle=config.get("caBundle"), service=self.service.copy())


def local_server(listen: str) -> kopf.WebhookServer:
    """HTTPS on this machine with a fresh self-made certificate, for an API server on the same machine."""
    host, port = split_listen(listen)
    cert, key = self_signed([host]).write(Path(tempfile.mkdtemp(prefix="domig-webhook-")))
    return kopf.WebhookServer(addr=host, port=port, host=host, certfile=str(cert), pkeyfile=str(key))


def parse_service(text: str) -> tuple[str, str, int]:
    where, _, port = text.partition(":")
    namespace, _, name = where.partition("/")
    if not namespace or not name or (port and not port.isdigit()):
        raise ValueError(f"DOMIG_WEBHOOK_SERVICE: expected NAMESPACE/NAME[:PORT], got {text!r}")
    return namespace, name, int(port or 443)


async def cluster_server(listen: str, service: str, kube: Kube) -> kopf.WebhookServer:
    """Behind a Service; every replica serves with the one certificate kept in a Secret."""
    namespace, name, service_port = parse_service(service)
    addr, port = split_listen(listen)
    names = [f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local", f"{name}.{namespace}", name]
    pair = await keypair(kube, SECRET, namespace, lambda: self_signed(names))
    cert, key = pair.write(Path(tempfile.mkdtemp(prefix="domig-webhook-")))
    return ServiceWebhookServer(
        namespace=namespace,
        name=name,
        service_port=service_port,
        addr=addr,
        port=port,
        certfile=str(cert),
        pkeyfile=str(key),
    )


async def keypair(kube: Kube, name: str, namespace: str, make: Callable[[], KeyPair]) -> KeyPair:
    """A TLS Secret shared by the replicas: read it, or make it if no replica has yet."""
    for _ in range(2):
        data = await kube.secret(name, namespace)
        if data and data.get("tls.crt") and data.get("tls.key"):
            return KeyPair(cert=data["tls.crt"].encode(), key=data["tls.key"].encode())
        pair = make()
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {
                "tls.crt": base64.b64encode(pair.cert).decode(),
                "tls.key": base64.b64encode(pair.key).decode(),
            },
        }
        try:
            await asyncio.to_thread(kube.core.create_namespaced_secret, namespace, body)  # type: ignore[arg-type]
            return pair
        except ApiException as exc:
            if exc.status != 409:  # 409: another replica made it first; read theirs
                raise
    raise RuntimeError(f"the Secret {namespace}/{name} exists but holds no tls.crt/tls.key")


__all__ = ["CONFIGURATION", "KeyPair", "ServiceWebhookServer", "cluster_server", "local_server"]
