"""Probing a HypervisorHost: can we reach it, what is it, how many domains does it hold."""

from __future__ import annotations

from typing import Any

from controller.api.hosts import HypervisorHost
from controller.api.status import Condition, timestamp
from controller.backends.base import BackendError
from controller.backends.registry import DriverTable
from controller.operator import metrics
from controller.operator.hosts import HostProblem, resolve
from controller.operator.kube import Kube


async def probe(host: HypervisorHost, drivers: DriverTable, kube: Kube | None) -> dict[str, Any]:
    now = timestamp()
    previous = {c.type: c for c in host.status.conditions}
    try:
        config = await resolve(host, kube)
        conn = await drivers.get(config.driver).connect(config)
        try:
            found: dict[str, Any] = {
                "reachable": True,
                "hostname": await conn.hostname(),
                "hypervisorVersion": await conn.version(),
                "domainCount": len(await conn.list_domains()),
                "message": "",
            }
        finally:
            await conn.close()
        ready, reason = True, "Reachable"
    except (BackendError, HostProblem) as exc:
        found = {"reachable": False, "message": str(exc)}
        ready, reason = False, "Unreachable"
    metrics.host_probed(host.name, host.spec.driver, ready)
    before = previous.get("Ready")
    value = "True" if ready else "False"
    since = before.last_transition_time if before and before.status == value else now
    condition = Condition(
        type="Ready", status=value, reason=reason, message=found["message"], last_transition_time=since
    )
    return {**found, "lastProbeTime": now, "conditions": [condition.dump()]}
