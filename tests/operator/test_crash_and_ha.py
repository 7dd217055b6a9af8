"""kill -9 the operator mid-migration, and two replicas with peering: one migrate call, always."""

from __future__ import annotations

import asyncio

import pytest

from tests.kube.emulator import ApiServer, KopfOperator, KopfSubprocess
from tests.operator.conftest import FAST, HANDLERS, NS, host, migration, until, wait_phase, where, world_state

SLOW = [{"name": "web", "memoryMiB": 6144, "dirtyRateMiBps": 10}]  # ~12 s at 500 MiB/s


def progress(kube: ApiServer, name: str) -> float:
    status = (kube.read("domainmigrations", name, NS) or {}).get("status", {})
    if status.get("phase") != "Migrating":
        return 0.0
    return float((status.get("progress") or {}).get("percent") or 0.0)


def setup(kube: ApiServer, world: str) -> None:
    kube.apply(host("host-a", world, SLOW, linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))


@pytest.mark.slow
async def test_kill_9_while_migrating_then_restart_reattaches(kube: ApiServer, world: str) -> None:
    setup(kube, world)
    with KopfSubprocess(kube, HANDLERS, env=FAST) as first:
        kube.apply(migration("m", flags=["live", "undefineSource"]))
        await until(lambda: progress(kube, "m") > 5, within=30)
        first.kill()  # SIGKILL: no abort, no status patch, no goodbye
        first.wait()
    await asyncio.sleep(2)  # the hypervisor carries on alone
    assert world_state(world)["migrateCalls"] == 1
    with KopfSubprocess(kube, HANDLERS, env=FAST) as second:
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
        assert done["status"]["phase"] == "Succeeded", (done["status"], second.output[-3000:])
    assert world_state(world)["migrateCalls"] == 1
    assert where(world) == {"host-b": "running"}


@pytest.mark.slow
async def test_two_replicas_only_one_acts_and_the_other_takes_over(
    kube: ApiServer, world: str, operator_env: dict[str, str]
) -> None:
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "domig"}})
    setup(kube, world)
    leader = KopfOperator(kube, HANDLERS, peering="domig", priority=100, thread=True, identity="leader")
    follower = KopfOperator(kube, HANDLERS, peering="domig", priority=10, thread=True, identity="follower")
    await leader.start()
    await follower.start()
    try:
        kube.apply(migration("m"))
        await until(lambda: progress(kube, "m") > 5, within=30)
        assert world_state(world)["migrateCalls"] == 1
        await leader.stop()  # a rolling update, or the leader's node goes away
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
        assert done["status"]["phase"] == "Succeeded", done["status"]
    finally:
        await follower.stop()
        if leader.running:
            await leader.stop()
    assert world_state(world)["migrateCalls"] == 1
    migrating = [t for t in done["status"]["phaseTransitionTimestamps"] if t["phase"] == "Migrating"]
    assert len(migrating) == 1  # the follower re-attached; it did not start over


@pytest.mark.slow
async def test_kill_9_while_one_runs_and_another_waits_for_its_slot(kube: ApiServer, world: str) -> None:
    domains = [{"name": "web", "memoryMiB": 4096}, {"name": "db", "memoryMiB": 4096}]
    kube.apply(host("host-a", world, domains, linkMiBps=500, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=500))

    def state(name: str) -> tuple[str | None, str | None]:
        status = (kube.read("domainmigrations", name, NS) or {}).get("status", {})
        return status.get("phase"), status.get("reason")

    with KopfSubprocess(kube, HANDLERS, env=FAST) as first:
        kube.apply(migration("web", domain="web"))
        await until(lambda: progress(kube, "web") > 5, within=30)
        kube.apply(migration("db", domain="db"))
        await until(lambda: state("db") == ("Pending", "WaitingForSlot"), within=30)
        first.kill()
        first.wait()
    with KopfSubprocess(kube, HANDLERS, env=FAST):
        # After the restart the running one keeps its slot: the waiting one must still wait.
        await asyncio.sleep(1.5)
        assert state("db")[0] == "Pending"
        web = await wait_phase(kube, "web", {"Succeeded", "Failed", "Aborted"}, within=60)
        db = await wait_phase(kube, "db", {"Succeeded", "Failed", "Aborted"}, within=60)
    assert web["status"]["phase"] == db["status"]["phase"] == "Succeeded"
    assert world_state(world)["migrateCalls"] == 2
    web_end = next(t["time"] for t in web["status"]["phaseTransitionTimestamps"] if t["phase"] == "Succeeded")
    db_start = next(t["time"] for t in db["status"]["phaseTransitionTimestamps"] if t["phase"] == "Validating")
    assert db_start >= web_end
