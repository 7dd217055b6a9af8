"""What the validating admission webhook answers: what no schema can check, against the live hosts.

The schema and CEL rules (the rulebook) already refused what is wrong in itself; this adds what
depends on other objects: whether the hosts' drivers can honour the rename, flags and parameters
(the 2007 proposal's NoSupport), whether a host allows the namespace, what the MigrationPolicy that selects it forbids,
and whether an admitted spec changes where it may not. It only reads: the webhook never moves anything, and the operator
checks all of this again itself, so a cluster without the webhook is still safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.api.errors import SpecError
from controller.api.hypervisor_host import HypervisorHost
from controller.api.immutability import MUTABLE, refused_changes
from controller.api.migration_policy import MigrationPolicy
from controller.api.permissions import forbidden_by
from controller.api.resource import DomainMigration
from controller.backends.protocol import BackendError
from controller.backends.registry import DriverTable
from controller.engine.checks import different_drivers, limitations, unsupported_by_either
from controller.engine.placement import Guest, none_fit, sift
from controller.engine.weighing import candidate
from controller.operator.host_resources import HostIndex, hosts_in, lookup

LIVE_FIELDS = ", ".join(sorted(MUTABLE))


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return "; ".join(self.problems)


def admitted_spec(old: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The spec the operator started with, once it has: changes to it are refused from then on."""
    status = (old or {}).get("status") or {}
    accepted = status.get("acceptedSpec")
    if accepted:
        return dict(accepted)
    if status.get("phase") not in (None, "Pending"):
        return dict((old or {}).get("spec") or {})
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    """A part of a document that should be a mapping; anything else reads as empty (the model says why)."""
    return value if isinstance(value, Mapping) else {}


def chosen_destination(body: Mapping[str, Any] | None) -> str | None:
    """The destination the operator chose for a migration whose spec names none."""
    placement = ((body or {}).get("status") or {}).get("placement") or {}
    chosen = placement.get("destination")
    return str(chosen) if chosen else None


def review_migration(
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    hosts: HostIndex,
    drivers: DriverTable,
    policy: MigrationPolicy | None = None,
) -> Verdict:
    verdict = Verdict()
    meta = _mapping(new.get("metadata"))
    namespace = str(meta.get("namespace") or "")
    raw = new.get("spec")
    spec = dict(raw) if isinstance(raw, Mapping) else {}
    given = spec if isinstance(raw, Mapping) or raw is None else raw  # not a mapping: the model names spec
    try:
        migration = DomainMigration.parse(
            {"metadata": {"name": meta.get("name") or "x", "namespace": namespace or None}, "spec": given}
        )
    except SpecError as exc:
        verdict.problems.extend(exc.problems)
        return verdict
    accepted = admitted_spec(old)
    if accepted is not None:
        for changed in refused_changes(accepted, spec, chosen_destination(old)):
            verdict.problems.append(
                f"spec.{changed}: cannot change once the migration has been admitted (only {LIVE_FIELDS} may):"
                " create a new DomainMigration instead"
            )
        return verdict  # the hosts were checked when it was admitted; they are the operator's to watch now
    _check_hosts(migration, namespace, hosts, drivers, verdict)
    if policy is not None:
        for where, why in forbidden_by(policy.metadata.name, policy.spec, migration.spec):
            verdict.problems.append(f"spec.{where}: {why}")
    return verdict


def _check_hosts(
    migration: DomainMigration, namespace: str, hosts: HostIndex, drivers: DriverTable, verdict: Verdict
) -> None:
    spec = migration.spec
    found = {}
    for side in ("source", "destination"):
        name = getattr(spec, side)
        if name is None:
            _check_choice(migration, namespace, hosts, verdict)
            continue
        host = lookup(hosts, name)
        if host is None:
            verdict.warnings.append(
                f"spec.{side}: no HypervisorHost named {name!r} yet; the migration waits Pending until it exists"
            )
            continue
        found[side] = host
        if side == "destination" and host.spec.closed:
            verdict.warnings.append(
                f"spec.destination: HypervisorHost {name} is in maintenance; the migration waits Pending until it ends"
            )
        allowed = host.spec.allowed_namespaces
        if allowed is not None and namespace not in allowed:
            verdict.problems.append(
                f"spec.{side}: NamespaceNotAllowed: HypervisorHost {name} does not allow namespace {namespace}"
                f" (allowedNamespaces: {', '.join(allowed) or 'none'})"
            )
    if "source" in found and "destination" in found and spec.destination is not None:
        a, b = found["source"].spec.driver, found["destination"].spec.driver
        problem = different_drivers(spec.source, a, spec.destination, b)
        if problem:
            verdict.problems.append(f"spec.destination: NoSupport: {problem}")
    sides = []
    for side, host in found.items():
        try:
            sides.append((side, host.spec.driver, drivers.get(host.spec.driver).capabilities))
        except BackendError as exc:
            verdict.warnings.append(f"spec.{side}: the {host.spec.driver} driver could not be checked here: {exc}")
    for side, where, why in unsupported_by_either(spec, sides):
        verdict.problems.append(f"spec.{where}: NoSupport: {why} ({side} host {found[side].name})")
    source = next((found for found in sides if found[0] == "source"), None)
    if source is not None:
        verdict.warnings.extend(limitations(source[1], source[2]))  # said now, not discovered mid-migration


def _check_choice(migration: DomainMigration, namespace: str, hosts: HostIndex, verdict: Verdict) -> None:
    """No destination: say now if no host could take it, as the operator would weigh them (memory aside)."""
    spec = migration.spec
    source = lookup(hosts, spec.source)
    if source is None:
        return  # said for spec.source
    guest = Guest(spec.source, source.spec.driver, namespace, selector=spec.destination_selector or {})
    open_hosts, ruled_out = sift(guest, [candidate(host) for host in hosts_in(hosts)])
    if not open_hosts:
        verdict.warnings.append(
            f"spec.destination: not given, and no HypervisorHost can take it now ({none_fit(ruled_out)});"
            " the migration waits Pending until one can"
        )


def _review_document(model: type[HypervisorHost] | type[MigrationPolicy], new: Mapping[str, Any]) -> Verdict:
    """What the model refuses beyond the CRD's schema and rules (its cross-object checks)."""
    verdict = Verdict()
    try:
        spec = new.get("spec")
        model.parse({"metadata": new.get("metadata") or {"name": "x"}, "spec": {} if spec is None else spec})
    except SpecError as exc:
        verdict.problems.extend(exc.problems)
    return verdict


def review_policy(new: Mapping[str, Any]) -> Verdict:
    """A policy whose own schedule asks for what it forbids is refused (the model says which step)."""
    return _review_document(MigrationPolicy, new)


def review_host(new: Mapping[str, Any]) -> Verdict:
    return _review_document(HypervisorHost, new)
