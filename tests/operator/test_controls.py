"""What a user changes on a running migration: abort, delete, live tuning, refused changes."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, events_for, host, migration, until, wait_phase, where

SLOW = [{"name": "web", "memoryMiB": 8192, "dirtyRateMiBps": 10}]  # ~16 s at 500 MiB/s
SPINNER = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 400}]


def running(kube: ApiServer, name: str) -> bool:
    obj = kube.read("domainmigrations", name, NS) or {}
    progress = obj.get("status", {}).get("progress") or {}
    return obj.get("status", {}).get("phase") == "Migrating" and (progress.get("dataProcessedBytes") or 0) > 0


def setup(kube: ApiServer, world: str, domains: list[dict[str, object]]) -> None:
    kube.apply(host("host-a", world, domains, linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))


async def test_spec_abort_aborts_and_keeps_the_record(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    setup(kube, world, SLOW)
    kube.apply(migration("m", flags=["live", "undefineSource"]))
    await until(lambda: running(kube, "m"))
    kube.patch_object("domainmigrations", "m", {"spec": {"abort": True}}, NS)
    done = await wait_phase(kube, "m", {"Aborted", "Succeeded", "Failed"})
    assert done["status"]["phase"] == "Aborted" and done["status"]["reason"] == "Aborted"
    assert "web runs on host-a" in done["status"]["message"]
    assert where(world) == {"host-a": "running"}
    await until(lambda: any(e["reason"] == "Aborted" and e["type"] == "Warning" for e in events_for(kube, "m")))


async def test_deleting_a_running_migration_aborts_it_first(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    setup(kube, world, SLOW)
    kube.apply(migration("m", flags=["live", "undefineSource"]))
    await until(lambda: running(kube, "m"))
    assert "domig.dev/finalizer" in kube.read("domainmigrations", "m", NS)["metadata"]["finalizers"]  # type: ignore[index]
    kube.delete_object("domainmigrations", "m", NS)
    await until(lambda: kube.read("domainmigrations", "m", NS) is None)
    assert where(world) == {"host-a": "running"}
    patches = [r for r in kube.log() if r.name == "m" and r.subresource == "status" and r.method == "PATCH"]
    assert patches[-1].data["status"]["phase"] == "Aborted"  # the last word before it went


async def test_live_tuning_lets_a_stuck_migration_converge(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    setup(kube, world, SPINNER)
    kube.apply(migration("m", params={"bandwidth": 100, "downtime": 300}))
    await until(lambda: running(kube, "m"))
    kube.patch_object("domainmigrations", "m", {"spec": {"params": {"bandwidth": 500}}}, NS)
    done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=40)
    assert done["status"]["phase"] == "Succeeded"
    conditions = {c["type"]: c for c in done["status"]["conditions"]}
    assert conditions["SpecChangeRefused"]["status"] == "False"


async def test_other_spec_changes_are_refused_with_a_condition(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    setup(kube, world, SLOW)
    kube.apply(host("host-c", world))
    kube.apply(migration("m"))
    await until(lambda: running(kube, "m"))
    kube.patch_object("domainmigrations", "m", {"spec": {"destination": "host-c"}}, NS)

    def refused() -> bool:
        conditions = (kube.read("domainmigrations", "m", NS) or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "SpecChangeRefused" and c["status"] == "True" for c in conditions)

    await until(refused)
    refusal = condition(kube, "m", "SpecChangeRefused")
    sent = progress_sent(kube, "m")
    # Progress patches go on for longer than the timestamp's one-second resolution.
    await asyncio.sleep(1.5)
    await until(lambda: progress_sent(kube, "m") != sent)
    done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=40)
    assert done["status"]["phase"] == "Succeeded" and done["status"]["target"]["host"] == "host-b"
    message = next(c for c in done["status"]["conditions"] if c["type"] == "SpecChangeRefused")["message"]
    assert "changed: destination" in message and "create a new DomainMigration" in message
    # The condition did not flip again, so its transition time stays where the refusal put it.
    assert condition(kube, "m", "SpecChangeRefused")["lastTransitionTime"] == refusal["lastTransitionTime"]


def condition(kube: ApiServer, name: str, kind: str) -> dict[str, Any]:
    conditions = (kube.read("domainmigrations", name, NS) or {}).get("status", {}).get("conditions", [])
    return next(c for c in conditions if c["type"] == kind)


def progress_sent(kube: ApiServer, name: str) -> object:
    status = (kube.read("domainmigrations", name, NS) or {}).get("status", {})
    return (status.get("progress") or {}).get("dataProcessedBytes")


async def test_a_change_to_a_finished_migration_is_refused_too(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    setup(kube, world, [{"name": "web", "memoryMiB": 256}])
    kube.apply(migration("m"))
    await wait_phase(kube, "m", {"Succeeded"})
    kube.patch_object("domainmigrations", "m", {"spec": {"flags": ["live", "postCopy"]}}, NS)

    def refused() -> bool:
        conditions = (kube.read("domainmigrations", "m", NS) or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "SpecChangeRefused" and c["status"] == "True" for c in conditions)

    await until(refused)
    assert kube.read("domainmigrations", "m", NS)["status"]["phase"] == "Succeeded"  # type: ignore[index]
