"""The few Kubernetes API calls the operator makes itself (kopf does the watching)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException

from controller.api.resource import GROUP, VERSION
from controller.kubeclient import api_client

T = TypeVar("T")

# The API server's passing troubles (etcd's leader changed, a 503 in a rollout, 429): asked again
# after these pauses, as kopf asks again for its own requests, before the caller hears of it. Without
# it, one failed status patch ended the daemon's run: kopf started it again 5 s later, and that
# restart also restarted the monitor's clocks (timeouts.progress, notConvergingFor), so under a
# flaky API server a migration that did not progress was never stopped.
RETRY_PAUSES = (0.2, 0.5, 1.0, 2.0, 4.0)
TRANSIENT = frozenset({429, 500, 502, 503, 504})


def _retry_after(exc: ApiException) -> float | None:
    raw = (exc.headers or {}).get("Retry-After", "")
    return float(raw) if raw.isdigit() else None


class Kube:
    def __init__(self, client: kubernetes.client.ApiClient, pauses: Sequence[float] = RETRY_PAUSES) -> None:
        self.client = client
        self.pauses = tuple(pauses)
        self.custom = kubernetes.client.CustomObjectsApi(client)
        self.core = kubernetes.client.CoreV1Api(client)

    @classmethod
    def from_environment(cls) -> Kube:
        return cls(api_client())

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """A client call off the event loop; a transient error is asked again after each pause.
        Every call made here is idempotent (reads, merge patches, a create whose repeat answers 409)."""
        for pause in (*self.pauses, None):
            try:
                return await asyncio.to_thread(fn, *args, **kwargs)
            except ApiException as exc:
                if exc.status not in TRANSIENT or pause is None:
                    raise
                await asyncio.sleep(max(pause, _retry_after(exc) or 0.0))
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def patch_status(self, plural: str, name: str, namespace: str | None, patch: dict[str, Any]) -> None:
        body = {"status": patch}
        try:
            if namespace:
                await self.call(
                    self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
                )
            else:
                await self.call(self.custom.patch_cluster_custom_object_status, GROUP, VERSION, plural, name, body)
        except ApiException as exc:
            raise in_kopf_terms(exc, f"the status of {plural} {namespace + '/' if namespace else ''}{name}") from exc

    async def read(self, plural: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The object as the API server holds it now (None if it is gone), not as a watch last said."""
        found: object
        try:
            if namespace:
                found = await self.call(
                    self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
                )
            else:
                found = await self.call(self.custom.get_cluster_custom_object, GROUP, VERSION, plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise in_kopf_terms(exc, f"{plural} {namespace + '/' if namespace else ''}{name}") from exc
        assert isinstance(found, dict), "the client decodes an object's JSON to a dict"
        return found

    async def list(self, plural: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        try:
            found = await self.call(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural, label_selector=selector
            )
        except ApiException as exc:
            raise in_kopf_terms(exc, f"{plural} in {namespace} labelled {selector}") from exc
        assert isinstance(found, dict), "the client decodes a list's JSON to a dict"
        return list(found.get("items") or [])

    async def create(self, plural: str, namespace: str, body: dict[str, Any]) -> bool:
        """Create the object; False if one of that name exists already (made by an earlier try)."""
        try:
            await self.call(self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise in_kopf_terms(exc, f"{plural} {namespace}/{body['metadata']['name']}") from exc
        return True

    async def patch(self, plural: str, name: str, namespace: str, body: dict[str, Any]) -> None:
        try:
            await self.call(self.custom.patch_namespaced_custom_object, GROUP, VERSION, namespace, plural, name, body)
        except ApiException as exc:
            if exc.status == 404:
                return  # gone: nothing left to change
            raise in_kopf_terms(exc, f"{plural} {namespace}/{name}") from exc

    async def secret(self, name: str, namespace: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None if it does not exist."""
        try:
            secret = await self.call(self.core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}


def in_kopf_terms(exc: ApiException, what: str) -> kopf.PermanentError | kopf.TemporaryError:
    """An API error as kopf should treat the handler that met it: retry later, or give up."""
    if exc.status == 404:
        return kopf.PermanentError(f"{what}: the object is gone")
    if exc.status in (400, 403, 422):
        # Our request is wrong or not allowed: the same request will be refused again.
        return kopf.PermanentError(f"{what}: refused ({exc.status} {exc.reason})")
    delay = _retry_after(exc) or 5.0
    return kopf.TemporaryError(f"{what}: {exc.status} {exc.reason}; trying again", delay=delay)
