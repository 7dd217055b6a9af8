"""kill -9 the operator in every phase, and two replicas with peering: one migrate call, always."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import kmock
import pytest

from tests.kube.emulator import ApiServer, KopfOperator, KopfSubprocess
from tests.kube.emulator.faults import Tripwire
from tests.operator.conftest import FAST, HANDLERS, NS, host, migration, until, wait_phase, world_state
from tests.operator.conftest import where as where_is

SLOW = [{"name": "web", "memoryMiB": 6144, "dirtyRateMiBps": 10}]  # ~12 s at 500 MiB/s


def progress(kube: ApiServer, name: str) -> float:
    status = (kube.read("domainmigrations", name, NS) or {}).get("status", {})
    if status.get("phase") != "Migrating":
        return 0.0
    return float((status.get("progress") or {}).get("percent") or 0.0)


def setup(kube: ApiServer, world: str) -> None:
    kube.apply(host("host-a", world, SLOW, linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))


def status_patch_of(name: str, request: kmock.Request) -> dict[str, Any] | None:
    """The status a request writes to DomainMigration `name`, if it is such a write."""
    if request.method != kmock.method.PATCH or request.subresource != "status" or request.name != name:
        return None
    return dict((request.data or {}).get("status") or {}) if isinstance(request.data, dict) else None


def entering(phase: str) -> Callable[[ApiServer, kmock.Request], bool]:
    """The write that moves the migration into `phase`."""

    def check(kube: ApiServer, request: kmock.Request) -> bool:
        written = status_patch_of("m", request)
        stored = (kube.read("domainmigrations", "m", NS) or {}).get("status") or {}
        return written is not None and written.get("phase") == phase and stored.get("phase") != phase

    return check


def marking(kube: ApiServer, request: kmock.Request) -> bool:
    """The write of the migrate-call marker, which the engine saves before it calls migrate."""
    written = status_patch_of("m", request)
    stored = (kube.read("domainmigrations", "m", NS) or {}).get("status") or {}
    return bool(written and written.get("migrationStartTime")) and not stored.get("migrationStartTime")


def moving(kube: ApiServer, request: kmock.Request) -> bool:
    """A progress report of a job under way."""
    written = status_patch_of("m", request) or {}
    percent = float((written.get("progress") or {}).get("percent") or 0)
    return written.get("phase") == "Migrating" and 5 < percent < 95


# Where the operator dies: the write it was making then (stored first or not), the phase the API
# server holds at that moment, and how many migrate calls the hypervisor has seen by then. Before
# Migrating a phase only reads, so dying as it starts or as it ends leaves the same state behind.
KILLS = {
    # Admitted at once, a migration writes no Pending first: its first status is Validating's.
    "Pending, admitted, its slot held": (entering("Validating"), False, None, 0),
    "Validating": (entering("Validating"), True, "Validating", 0),
    "Preparing": (entering("Preparing"), True, "Preparing", 0),
    "Migrating, as it starts": (entering("Migrating"), True, "Migrating", 0),
    "Migrating, marker saved, no call yet": (marking, True, "Migrating", 0),
    "Migrating, the job under way": (moving, True, "Migrating", 1),
    "Migrating, the job done": (entering("Verifying"), False, "Migrating", 1),
    "Verifying, its work done": (entering("Succeeded"), False, "Verifying", 1),
}


@pytest.mark.slow
@pytest.mark.parametrize("where", list(KILLS))
async def test_kill_9_in_every_phase_then_restart(
    kube: ApiServer, world: str, operator_env: dict[str, str], where: str
) -> None:
    """SIGKILL at an exact point, chosen by the write the operator is making (a tripwire in the
    emulator: before the write is stored, or once it is, before the operator hears back); then a
    fresh operator (in-process: no second start-up of a Python process) takes it from there."""
    when, after, phase_then, calls_then = KILLS[where]
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 1024}], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    with KopfSubprocess(kube, HANDLERS, env={**FAST, "DOMIG_PROGRESS_INTERVAL": "0.2"}) as first:
        wire = Tripwire(lambda request: when(kube, request), first.kill, after=after)
        kube.tripwires.append(wire)
        kube.apply(migration("m", flags=["live", "undefineSource"]))
        await until(wire.fired.is_set, within=30)
        first.wait()  # SIGKILL: no abort, no status patch, no goodbye
    status = (kube.read("domainmigrations", "m", NS) or {}).get("status") or {}
    assert (status.get("phase"), world_state(world)["migrateCalls"]) == (phase_then, calls_then), status
    async with KopfOperator(kube, HANDLERS):
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert world_state(world)["migrateCalls"] == 1
    assert where_is(world) == {"host-b": "running"}


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
async def test_a_replica_that_pauses_for_another_admits_nothing_more(
    kube: ApiServer, world: str, operator_env: dict[str, str]
) -> None:
    """A rolling update: a replica of higher priority joins, the one that acted pauses. The new
    one takes over the running migration and the waiting one, which starts only once the first has
    ended and gives back the host's only outbound slot, once. (That a paused replica's waiting
    room looks at nothing is tests/operator/test_waiting_room.py's.)"""
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "domig"}})
    domains = [{"name": "web", "memoryMiB": 4096}, {"name": "db", "memoryMiB": 4096}]
    kube.apply(host("host-a", world, domains, linkMiBps=500, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=500))
    first = KopfOperator(kube, HANDLERS, peering="domig", priority=10, thread=True, identity="first")
    second = KopfOperator(kube, HANDLERS, peering="domig", priority=100, thread=True, identity="second")
    await first.start()
    try:
        kube.apply(migration("web", domain="web"))
        await until(lambda: progress(kube, "web") > 5, within=30)
        kube.apply(migration("db", domain="db"))
        await until(
            lambda: (kube.read("domainmigrations", "db", NS) or {}).get("status", {}).get("reason") == "WaitingForSlot"
        )
        await second.start()
        web = await wait_phase(kube, "web", {"Succeeded", "Failed", "Aborted"}, within=90)
        db = await wait_phase(kube, "db", {"Succeeded", "Failed", "Aborted"}, within=90)
    finally:
        for replica in (second, first):
            if replica.running:
                await replica.stop()
    assert web["status"]["phase"] == db["status"]["phase"] == "Succeeded", (web["status"], db["status"])
    assert world_state(world)["migrateCalls"] == 2
    web_end = next(t["time"] for t in web["status"]["phaseTransitionTimestamps"] if t["phase"] == "Succeeded")
    db_starts = [t["time"] for t in db["status"]["phaseTransitionTimestamps"] if t["phase"] == "Validating"]
    assert len(db_starts) == 1 and db_starts[0] >= web_end, (db_starts, web_end)


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
