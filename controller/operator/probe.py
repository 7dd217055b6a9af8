"""Probing a HypervisorHost: can we reach it, what is it, how many domains does it hold."""

from __future__ import annotations

from typing import Any

from controller.api.conditions import set_condition
from controller.api.hypervisor_host import HypervisorHost
from controller.api.status import ConditionType, timestamp
from controller.backends.protocol import BackendError
from controller.backends.registry import DriverTable
from controller.operator import metrics
from controller.operator.host_resources import HostProblem, resolve
from controller.operator.kube import Kube


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
