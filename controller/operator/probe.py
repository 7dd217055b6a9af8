"""Probing a HypervisorHost: can we reach it, what is it, what does it hold and have room for."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.api.conditions import set_condition
from controller.api.hypervisor_host import HypervisorHost
from controller.api.status import ConditionType, timestamp
from controller.backends.protocol import BackendError, HostCapacity
from controller.backends.registry import DriverTable
from controller.engine.admission import Ticket
from controller.operator import metrics
from controller.operator.host_resources import HostProblem, resolve
from controller.operator.kube import Kube


def capacity_status(capacity: HostCapacity) -> dict[str, Any]:
    """The status fields of a capacity; a figure the driver cannot tell is None, which the merge
    patch removes, so no earlier figure stays standing for it."""
    return {
        "memoryTotalBytes": capacity.memory_total_bytes,
        "memoryFreeBytes": capacity.memory_free_bytes,
        "cpus": capacity.cpus,
        "cpuModel": capacity.cpu_model,
        "runningDomains": capacity.running_domains,
    }


def migration_counts(host: str, tickets: Iterable[Ticket]) -> dict[str, int]:
    held = list(tickets)
    return {
        "migrationsIn": sum(1 for t in held if t.destination == host),
        "migrationsOut": sum(1 for t in held if t.source == host),
    }


async def probe(host: HypervisorHost, drivers: DriverTable, kube: Kube | None) -> dict[str, Any]:
    now = timestamp()
    try:
        config = await resolve(host, kube)
        conn = await drivers.get(config.driver).connect(config)
        try:
            found: dict[str, Any] = {
                "reachable": True,
                "hostname": await conn.hostname(),
                "hypervisorVersion": await conn.version(),
                "domainCount": len(await conn.list_domains()),
                **capacity_status(await conn.capacity()),
                "message": "",
            }
        finally:
            await conn.close()
        ready, reason = True, "Reachable"
    except (BackendError, HostProblem) as exc:
        found = {"reachable": False, "message": str(exc)}
        ready, reason = False, "Unreachable"
    metrics.host_probed(host.name, host.spec.driver, ready)
    conditions = set_condition(list(host.status.conditions), ConditionType.Ready, ready, reason, found["message"], now)
    return {**found, "lastProbeTime": now, "conditions": [c.dump() for c in conditions]}
