"""The few Kubernetes API calls the operator makes itself (kopf does the watching)."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from controller.api.resource import GROUP, VERSION


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)

    @classmethod
    def from_environment(cls) -> Kube:
        """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
        config = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        except kubernetes.config.ConfigException:
            # The library reads $KUBECONFIG once, at import; read it now instead.
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=os.environ.get("KUBECONFIG"), client_configuration=config
            )
        return cls(kubernetes.client.ApiClient(config))

    async def patch_status(self, plural: str, name: str, namespace: str | None, patch: dict[str, Any]) -> None:
        body = {"status": patch}
        if namespace:
            await asyncio.to_thread(
                self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
            )
        else:
            await asyncio.to_thread(self.custom.patch_cluster_custom_object_status, GROUP, VERSION, plural, name, body)

    async def secret(self, name: str, namespace: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None if it does not exist."""
        try:
            secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}
