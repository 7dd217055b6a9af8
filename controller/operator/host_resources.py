"""HypervisorHost resources, as kopf indexes them, turned into what the engine connects to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.api.enums import Reason
from controller.api.errors import SpecError
from controller.api.hypervisor_host import HostLimits, HypervisorHost, HypervisorHostStatus
from controller.backends.protocol import BackendError, Connection, Credentials, HostConfig
from controller.backends.registry import DriverTable
from controller.engine.host_directory import host_config
from controller.operator.kube import Kube

HostIndex = Mapping[str, Any]  # kopf.Index[str, dict]: name -> store of one HypervisorHost body


class HostProblem(Exception):
    def __init__(self, reason: Reason, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.final = final  # no point waiting: the answer will not change by itself


# The last parse of each host, by name, with what it was parsed from: a host is parsed once per
# change (its uid and resourceVersion), not once per look-up. Admission asks for a host's limits
# for every waiting migration it looks at, and a host's spec may list hundreds of test domains.
_parsed: dict[str, tuple[tuple[str, str], HypervisorHost | None]] = {}
parses = 0  # how many parses were done: tests count them


def lookup(index: HostIndex, name: str) -> HypervisorHost | None:
    """The host as parsed from its body; callers must not change it (it is shared)."""
    global parses
    store = index.get(name)
    if not store:
        return None
    body = next(iter(store))
    meta = body.get("metadata") or {}
    version = (str(meta.get("uid", "")), str(meta.get("resourceVersion", "")))
    cached = _parsed.get(name)
    if cached is not None and cached[0] == version and version[1]:
        return cached[1]
    parses += 1
    try:
        host: HypervisorHost | None = HypervisorHost.parse(
            {**body, "status": HypervisorHostStatus.known(body.get("status"))}
        )
    except SpecError:
        host = None
    _parsed[name] = (version, host)
    return host


def hosts_in(index: HostIndex) -> list[HypervisorHost]:
    return [host for name in sorted(index) if (host := lookup(index, name)) is not None]


def limits_of(index: HostIndex, name: str) -> HostLimits:
    host = lookup(index, name)
    return host.spec.limits if host else HostLimits()


def check_host(index: HostIndex, name: str, field: str, namespace: str) -> HypervisorHost:
    """The host a migration names: it must exist, be ready, and allow the namespace."""
    host = lookup(index, name)
    if host is None:
        raise HostProblem(Reason.HostNotFound, f"spec.{field}: no HypervisorHost named {name!r}")
    allowed = host.spec.allowed_namespaces
    if allowed is not None and namespace not in allowed:
        raise HostProblem(
            Reason.NamespaceNotAllowed,
            f"HypervisorHost {name} does not allow namespace {namespace}"
            f" (allowedNamespaces: {', '.join(allowed) or 'none'})",
            final=True,
        )
    if field == "destination" and host.spec.closed:
        why = "being evacuated (spec.evacuate)" if host.spec.evacuate else "in maintenance (spec.maintenance)"
        raise HostProblem(
            Reason.HostInMaintenance, f"HypervisorHost {name} is {why}: no new migrations to it until it ends"
        )
    if host.status.reachable is False:
        raise HostProblem(Reason.HostNotReady, f"HypervisorHost {name} is not ready: {host.status.message or ''}")
    return host


async def connect(host: HypervisorHost, drivers: DriverTable, kube: Kube | None) -> Connection:
    """A connection to the host, its credentials from its Secret; a missing Secret is a BackendError here."""
    try:
        config = await resolve(host, kube)
    except HostProblem as problem:
        raise BackendError(problem.message) from None
    return await drivers.get(config.driver).connect(config)


async def resolve(host: HypervisorHost, kube: Kube | None) -> HostConfig:
    """The engine's view of a host, with its Secret's credentials (never written anywhere)."""
    ref = host.spec.credentials_secret_ref
    credentials = None
    if ref is not None and kube is not None:
        data = await kube.secret(ref.name, ref.namespace or "default")
        if data is None:
            raise HostProblem(Reason.HostNotReady, f"the credentials Secret {ref.namespace}/{ref.name} does not exist")
        credentials = Credentials(data)
    return host_config(host, credentials)
