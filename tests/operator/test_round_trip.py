"""There and back through the operator: the maintenance round trip without undefineSource."""

from __future__ import annotations

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import host, migration, wait_phase, where, world_state

WEB = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 50}]
ENDED = {"Succeeded", "Failed", "Aborted"}


async def test_a_domain_goes_there_and_back_and_runs_at_home(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, WEB))
    kube.apply(host("host-b", world))
    kube.apply(migration("web-to-b"))
    there = (await wait_phase(kube, "web-to-b", ENDED))["status"]
    assert (there["phase"], there["reason"]) == ("Succeeded", "Completed"), there
    assert where(world) == {"host-a": "shutoff", "host-b": "running"}  # host-a keeps the definition

    kube.apply(migration("web-back-to-a", source="host-b", destination="host-a"))
    back = (await wait_phase(kube, "web-back-to-a", ENDED))["status"]
    assert (back["phase"], back["reason"]) == ("Succeeded", "Completed"), back
    assert back["message"] == "migrated: web runs on host-a"
    assert where(world) == {"host-a": "running"}
    assert back["target"]["uuid"] == back["source"]["uuid"] == there["source"]["uuid"]
    assert world_state(world)["hosts"]["host-a"]["domains"]["web"]["persistent"]
    assert world_state(world)["migrateCalls"] == 2
