"""What `domig operator` checks before kopf starts: our CRDs, kopf's peering, and its permissions.

kopf on its own waits without a word when the peering object is missing, and a missing
permission only shows as a 403 deep in its logs once it runs. These checks say it once, at
start-up, in one line each, naming what to apply or to grant.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from controller.api.resource import GROUP, VERSION

logger = logging.getLogger("domig.startup")

TIMEOUT = 10.0  # seconds a request may take: a start-up check must not hang where kopf would not
CRD_PLURALS = ("domainmigrations", "hypervisorhosts", "migrationpolicies")
# kopf takes its peering from either group, kopf.dev first; zalando.org is its legacy one.
PEERING_GROUPS = ("kopf.dev", "zalando.org")
PEERING_VERSION = "v1"
RBAC = "the operator's ClusterRole (manifests/rbac.yaml)"


class StartupError(Exception):
    """A reason the operator cannot work at all: one line that says what to do."""


@dataclass(frozen=True)
class Scope:
    """What `domig operator` was asked to watch, and how its replicas agree."""

    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    peering: str | None = "domig"  # None: --standalone
    webhook: bool = False  # serves the admission webhook, so registers its configuration

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    def exact_namespaces(self) -> list[str]:
        return [ns for ns in self.namespaces if not _is_pattern(ns)]


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    group: str = ""
    subresource: str = ""
    per_namespace: bool = False  # with -n, asked in each watched namespace; else cluster-wide
    why: str = ""

    def __str__(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {resource}.{self.group}" if self.group else f"{self.verb} {resource}"


def _both(verbs: Sequence[str], resource: str, group: str = "", **kw: Any) -> list[Permission]:
    return [Permission(verb, resource, group, **kw) for verb in verbs]


PERMISSIONS: list[Permission] = [
    *_both(("list", "watch"), "domainmigrations", GROUP, per_namespace=True, why="no migration would be seen"),
    Permission("get", "domainmigrations", GROUP, per_namespace=True, why="no migration would start or resume"),
    Permission("patch", "domainmigrations", GROUP, per_namespace=True, why="kopf keeps its finalizer and state there"),
    Permission("patch", "domainmigrations", GROUP, "status", per_namespace=True, why="no progress would be recorded"),
    Permission("create", "domainmigrations", GROUP, per_namespace=True, why="no host could be evacuated"),
    *_both(("list", "watch"), "hypervisorhosts", GROUP, why="no host would be known"),
    Permission("patch", "hypervisorhosts", GROUP, why="kopf keeps its probe timer's state there"),
    Permission("patch", "hypervisorhosts", GROUP, "status", why="no host would become Ready"),
    *_both(("list", "watch"), "migrationpolicies", GROUP, why="no MigrationPolicy would apply"),
    *_both(("list", "watch"), "namespaces", why="MigrationPolicies select namespaces by their labels"),
    *_both(("list", "watch"), "customresourcedefinitions", "apiextensions.k8s.io", why="kopf follows CRD changes"),
    Permission("get", "secrets", why="hosts with a credentialsSecretRef cannot log in"),
    Permission("create", "events", per_namespace=True, why="no Events would be posted"),
]


def check(client: kubernetes.client.ApiClient, scope: Scope) -> None:
    """Raise StartupError when the operator cannot work; warn about what it cannot do."""
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)  # one line below says it, not one warning per retry
    try:
        _check_crds(client)
        peering = _peering_resource(client, scope) if scope.peering is not None else None
        _check_permissions(client, scope, peering)
        if peering is not None:
            _ensure_peering(client, scope, *peering)
    except ApiException as exc:
        raise StartupError(_refused(exc)) from None
    except urllib3.exceptions.HTTPError as exc:
        why = getattr(exc, "reason", None) or exc
        raise StartupError(f"cannot reach the API server at {client.configuration.host}: {why}") from None
    finally:
        pool_log.setLevel(level)


def _served(client: kubernetes.client.ApiClient, group: str, version: str) -> dict[str, Any]:
    """The resources the API server serves in group/version (discovery: no permission needed)."""
    try:
        listing = kubernetes.client.CustomObjectsApi(client).get_api_resources(group, version, _request_timeout=TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return {r.name: r for r in listing.resources or []}


def _check_crds(client: kubernetes.client.ApiClient) -> None:
    served = _served(client, GROUP, VERSION)
    missing = [f"{plural}.{GROUP}" for plural in CRD_PLURALS if plural not in served]
    if missing:
        raise StartupError(
            f"the CRD{'s' if len(missing) > 1 else ''} {', '.join(missing)} ({GROUP}/{VERSION}) "
            f"{'are' if len(missing) > 1 else 'is'} not installed: "
            "kubectl apply -f crds/ (the CRDs alone) or kubectl apply -k manifests/ (the whole operator)"
        )


def _peering_resource(client: kubernetes.client.ApiClient, scope: Scope) -> tuple[str, str, str]:
    """(group, plural, kind) of the peering kopf will use; StartupError if none is installed."""
    plural, kind = (
        ("clusterkopfpeerings", "ClusterKopfPeering") if scope.clusterwide else ("kopfpeerings", "KopfPeering")
    )
    for group in PEERING_GROUPS:
        if plural in _served(client, group, PEERING_VERSION):
            return group, plural, kind
    raise StartupError(
        f"kopf's peering CRD {plural}.{PEERING_GROUPS[0]} is not installed, and without it kopf waits "
        "silently: kubectl apply -f manifests/peering.yaml, or run with --standalone for a single replica"
    )


def _check_permissions(client: kubernetes.client.ApiClient, scope: Scope, peering: tuple[str, str, str] | None) -> None:
    needed = list(PERMISSIONS)
    if scope.webhook:
        why = "the admission webhook could not be registered (manifests/webhook.yaml)"
        # kopf's managed mode keeps a mutating configuration too (empty: domig only validates).
        for configurations in ("validatingwebhookconfigurations", "mutatingwebhookconfigurations"):
            needed += _both(("create", "patch"), configurations, "admissionregistration.k8s.io", why=why)
    if peering is not None:
        group, plural, _ = peering
        why = "the replicas could not agree which one acts"
        needed += _both(("list", "watch", "patch"), plural, group, per_namespace=not scope.clusterwide, why=why)
    api = kubernetes.client.AuthorizationV1Api(client)
    for permission, namespace in _asked(needed, scope):
        attributes = kubernetes.client.V1ResourceAttributes(
            verb=permission.verb,
            group=permission.group,
            resource=permission.resource,
            subresource=permission.subresource,
            namespace=namespace,
        )
        review = kubernetes.client.V1SelfSubjectAccessReview(
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(resource_attributes=attributes)
        )
        try:
            answer = api.create_self_subject_access_review(review, _request_timeout=TIMEOUT)
        except ApiException as exc:
            # Not a reason to stop: the operator may well have what it needs.
            logger.warning(f"could not check the operator's permissions: {_refused(exc)}")
            return
        if answer.status is None or not answer.status.allowed:
            where = f"in namespace {namespace}" if namespace else "cluster-wide"
            logger.warning(f"not allowed to {permission} {where}: {permission.why}; grant it in {RBAC}")


def _asked(needed: Sequence[Permission], scope: Scope) -> Iterator[tuple[Permission, str]]:
    for permission in needed:
        if permission.per_namespace and not scope.clusterwide:
            for namespace in scope.exact_namespaces():
                yield permission, namespace
        else:
            yield permission, ""


def _ensure_peering(client: kubernetes.client.ApiClient, scope: Scope, group: str, plural: str, kind: str) -> None:
    assert scope.peering is not None
    name, api = scope.peering, kubernetes.client.CustomObjectsApi(client)
    targets: list[str | None] = [None] if scope.clusterwide else list(scope.exact_namespaces())
    for namespace in targets:
        what = f"{kind} {name!r}" + (f" in namespace {namespace}" if namespace else "")
        body: dict[str, Any] = {"apiVersion": f"{group}/{PEERING_VERSION}", "kind": kind, "metadata": {"name": name}}
        if namespace:
            body["metadata"]["namespace"] = namespace
        unreadable = False
        try:
            if namespace is None:
                api.get_cluster_custom_object(group, PEERING_VERSION, plural, name, _request_timeout=TIMEOUT)
            else:
                api.get_namespaced_custom_object(
                    group, PEERING_VERSION, namespace, plural, name, _request_timeout=TIMEOUT
                )
            continue
        except ApiException as exc:
            if exc.status not in (403, 404):
                raise
            unreadable = exc.status == 403  # no proof it is absent: creating it tells
        try:
            if namespace is None:
                api.create_cluster_custom_object(group, PEERING_VERSION, plural, body, _request_timeout=TIMEOUT)
            else:
                api.create_namespaced_custom_object(
                    group, PEERING_VERSION, namespace, plural, body, _request_timeout=TIMEOUT
                )
        except ApiException as exc:
            if exc.status == 409:  # another replica, starting at the same time, made it first
                logger.info(
                    f"kopf's peering object {what} is there" + ("" if unreadable else " (another replica made it)")
                )
                continue
            if exc.status == 403:
                raise StartupError(
                    f"kopf's peering object {what} is missing and the operator may not create it: "
                    f"allow create on {plural} (apiGroups: [{group}]) in {RBAC}, or create it yourself: "
                    f"kubectl create -f - <<<'{json.dumps(body)}', or run with --standalone for a single replica"
                ) from None
            raise
        logger.info(f"created kopf's peering object {what}: the replicas agree through it which one acts")
    for pattern in (ns for ns in scope.namespaces if _is_pattern(ns)):
        logger.warning(
            f"-n {pattern} is a pattern: kopf needs a {kind} {name!r} in every namespace it matches, "
            "and this check cannot create those"
        )


def _is_pattern(namespace: str) -> bool:
    return namespace.startswith("!") or any(c in namespace for c in "*?[")


def _refused(exc: ApiException) -> str:
    """One line for an API error: its code, and the server's own message when it sent one."""
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.body
    except (TypeError, ValueError, AttributeError):
        message = exc.body
    hint = {401: " (check the kubeconfig's credentials or the service account token)"}.get(exc.status or 0, "")
    return f"the API server said {exc.status} {exc.reason}: {message or ''}".rstrip(": ") + hint
