"""Emptying a host: HypervisorHost.spec.evacuate makes one DomainMigration per active domain on it,
owned by the host and labelled with it, each without a destination (admission places it, within
every limit), and counts them in the host's status until the host is empty or only what cannot
move is left. spec.evacuate back to false aborts what has not finished.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from controller.api.enums import MigrationFlag, Phase
from controller.api.hypervisor_host import EvacuatedDomain, Evacuation, HypervisorHost
from controller.api.resource import GROUP, VERSION
from controller.api.status import timestamp
from controller.backends.protocol import Capabilities
from controller.operator.kube import Kube

FROM = f"{GROUP}/evacuated-from"  # label: the host the migration empties
RUN = f"{GROUP}/evacuation"  # label: which evacuation of it (a host may be emptied many times)
# What a host emptied for maintenance wants: the domain defined and running on its new host, and
# not left defined on the old one, where a later start would run it twice (Nova's flags too).
FLAGS = (MigrationFlag.live, MigrationFlag.persistDest, MigrationFlag.undefineSource)
TERMINAL = {phase.value for phase in Phase if phase.terminal}


def run_label(started: str) -> str:
    """A label value for the evacuation that started at this time: 2026-12-01T16:00:00Z -> 20261201t160000z."""
    return re.sub(r"[^0-9a-z]", "", started.lower())


def run_started(label: str) -> str | None:
    """The start time a run label was made from (`run_label` backwards), or None if it is not one."""
    found = re.fullmatch(r"(\d{4})(\d{2})(\d{2})t(\d{2})(\d{2})(\d{2})z", label)
    if found is None:
        return None
    year, month, day, hour, minute, second = found.groups()
    return f"{year}-{month}-{day}T{hour}:{minute}:{second}Z"


def migration_name(host: str, domain: str, run: str) -> str:
    """A DNS-1123 name per (host, domain, evacuation): made twice, the second is refused (409), not doubled."""
    digest = hashlib.sha256(f"{host}\0{domain}\0{run}".encode()).hexdigest()[:8]
    clean = re.sub(r"[^a-z0-9-]+", "-", f"{host}-{domain}".lower()).strip("-")[:200].rstrip("-")
    return f"evacuate-{clean}-{digest}"


def migration_for(host: HypervisorHost, domain: str, evacuation: Evacuation, caps: Capabilities) -> dict[str, Any]:
    run = run_label(evacuation.started)
    owner = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HypervisorHost",
        "name": host.name,
        "uid": host.metadata.uid or "",
        "controller": True,
    }
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DomainMigration",
        "metadata": {
            "name": migration_name(host.name, domain, run),
            "namespace": evacuation.namespace,
            "labels": {FROM: host.name, RUN: run},
            "ownerReferences": [owner] if host.metadata.uid else [],
        },
        "spec": {"domain": domain, "source": host.name, "flags": [f.value for f in FLAGS if f in caps.flags]},
    }


def entry(body: Mapping[str, Any]) -> EvacuatedDomain:
    status = body.get("status") or {}
    phase = str(status.get("phase") or "Pending")
    if phase == "Pending" and status.get("reason") == "Unschedulable":
        phase = "Unplaceable"
    return EvacuatedDomain(
        domain=str(body["spec"]["domain"]),
        migration=str(body["metadata"]["name"]),
        phase=phase,
        destination=status.get("destination"),
        message=str(status.get("message") or ""),
    )


def tally(
    evacuation: Evacuation,
    migrations: Iterable[Mapping[str, Any]],
    left: Iterable[str],
    cancelled: bool,
    settle: float = 0.0,
) -> Evacuation:
    """The evacuation's counts and phase, from its migrations and the domains still active on the host."""
    entries = sorted((entry(body) for body in migrations), key=lambda e: e.domain)
    done = [e for e in entries if e.phase == "Succeeded"]
    failed = [e for e in entries if e.phase in ("Failed", "Aborted")]
    unplaceable = [e for e in entries if e.phase == "Unplaceable"]
    in_flight = [e for e in entries if e.phase not in TERMINAL and e.phase != "Unplaceable"]
    remaining = sorted(set(left))
    counts = {
        "total": len(entries),
        "done": len(done),
        "in_flight": len(in_flight),
        "failed": len(failed),
        "unplaceable": len(unplaceable),
    }
    moved = f"{len(done)} of {len(entries)} moved"
    idle_since = None
    if not cancelled and not in_flight and remaining:
        idle_since = evacuation.idle_since or timestamp()
        if elapsed_since(idle_since) < settle:
            in_flight = unplaceable  # they may yet be placed: a fresh look at the hosts decides
    if cancelled:
        phase = "Cancelled"
        rest = f"{len(in_flight) + len(unplaceable)} being aborted" if in_flight or unplaceable else "nothing runs"
        message = f"cancelled: {moved}, {rest}; every domain stays running on one host"
    elif in_flight:
        phase, message = "Running", f"{moved}, {len(in_flight)} in flight"
    elif not remaining:
        phase, message = "Completed", f"the host runs no domain: {moved}"
    else:
        phase = "Incomplete"
        said = {e.domain: e for e in entries}
        reasons = []
        for domain in remaining:
            found = said.get(domain)
            if found is None:
                reasons.append(f"{domain} (not yet given a migration)")
            elif found.phase == "Unplaceable":
                reasons.append(f"{domain} cannot be placed ({found.message})")
            else:
                reasons.append(f"{domain} {found.phase.lower()} ({found.message})")
        message = f"{moved}; left on the host: " + "; ".join(reasons)
    update = {"phase": phase, "message": message, "migrations": entries, "idle_since": idle_since, **counts}
    return evacuation.model_copy(update=update)


def elapsed_since(when: str) -> float:
    return (datetime.now(UTC) - datetime.fromisoformat(when.replace("Z", "+00:00"))).total_seconds()


def started(namespace: str) -> Evacuation:
    return Evacuation(phase="Running", started=timestamp(), namespace=namespace)


async def tend(
    kube: Kube,
    host: HypervisorHost,
    active: list[str],
    busy: set[str],
    caps: Capabilities,
    namespace: str,
    settle: float = 0.0,
) -> Evacuation:
    """One look at an evacuating host: make the migrations it lacks, count them all.
    `active`: the domains running or paused on it; `busy`: those another migration moves already."""
    evacuation = host.status.evacuation
    if evacuation is None or evacuation.phase == "Cancelled":
        evacuation = started(namespace)
    labels = {FROM: host.name, RUN: run_label(evacuation.started)}
    migrations = await kube.list("domainmigrations", evacuation.namespace, labels)
    given = {str(body["spec"]["domain"]) for body in migrations}
    for domain in active:
        if domain in given or domain in busy:
            continue
        document = migration_for(host, domain, evacuation, caps)
        await kube.create("domainmigrations", evacuation.namespace, document)
        migrations.append(document)
    return tally(evacuation, migrations, active, cancelled=False, settle=settle)


async def cancel(kube: Kube, host: HypervisorHost, active: list[str]) -> Evacuation | None:
    """spec.evacuate is false again: abort its migrations that have not finished."""
    evacuation = host.status.evacuation
    if evacuation is None:
        return None
    labels = {FROM: host.name, RUN: run_label(evacuation.started)}
    migrations = await kube.list("domainmigrations", evacuation.namespace, labels)
    for body in migrations:
        status, spec = body.get("status") or {}, body.get("spec") or {}
        if status.get("phase") not in TERMINAL and not spec.get("abort"):
            await kube.patch(
                "domainmigrations", body["metadata"]["name"], evacuation.namespace, {"spec": {"abort": True}}
            )
    return tally(evacuation, migrations, active, cancelled=True)


def settled(evacuation: Mapping[str, Any] | None) -> bool:
    """Nothing left to do for it: cancelled and nothing in flight (a finished one is tended while evacuate holds)."""
    return evacuation is None or (
        evacuation.get("phase") == "Cancelled" and not evacuation.get("inFlight") and not evacuation.get("unplaceable")
    )
