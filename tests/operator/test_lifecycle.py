"""kubectl apply -> the operator migrates -> status, conditions and events say so."""

from __future__ import annotations

import pytest

from tests.kube.emulator import ApiError, ApiServer, KopfOperator
from tests.operator.conftest import NS, events_for, host, migration, until, wait_phase, where, world_state

WEB = [{"name": "web", "memoryMiB": 2048, "dirtyRateMiBps": 50}]


async def test_a_migration_runs_to_succeeded_with_status_conditions_and_events(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, WEB))
    kube.apply(host("host-b", world))
    kube.apply(migration("m1", flags=["live", "undefineSource"]))
    done = await wait_phase(kube, "m1", {"Succeeded", "Failed", "Aborted"})
    status = done["status"]
    assert status["phase"] == "Succeeded", status
    assert status["reason"] == "Completed"
    assert status["progress"]["percent"] == 100.0 and status["progress"]["dataTotalBytes"] == 2048 * 1024 * 1024
    assert [t["phase"] for t in status["phaseTransitionTimestamps"]] == [
        "Validating",
        "Preparing",
        "Migrating",
        "Verifying",
        "Succeeded",
    ]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Reconciling"]["status"] == "False"
    assert conditions["Succeeded"]["status"] == "True" and conditions["Stalled"]["status"] == "False"
    assert all(c["observedGeneration"] == done["metadata"]["generation"] for c in status["conditions"])
    assert status["observedGeneration"] == done["metadata"]["generation"]
    assert status["acceptedSpec"]["domain"] == "web"
    assert where(world) == {"host-b": "running"}
    wanted = {"Validating", "Preparing", "Migrating", "Verifying", "Succeeded"}
    await until(lambda: wanted <= {e["reason"] for e in events_for(kube, "m1")})
    succeeded = [e for e in events_for(kube, "m1") if e["reason"] == "Succeeded"]
    assert succeeded[0]["type"] == "Normal" and succeeded[0]["message"] == "migrated: web runs on host-b"


async def test_the_crd_rejects_bad_input_naming_the_field(kube: ApiServer) -> None:
    with pytest.raises(ApiError) as info:
        kube.create(migration("bad", flags=["live", "warp"]))
    assert info.value.status == 422 and "spec.flags[1]" in str(info.value)
    with pytest.raises(ApiError) as info:
        kube.create(migration("bad2", destination="host-a"))
    assert info.value.status == 422 and "set dname to migrate to the same host" in str(info.value)


async def test_progress_is_patched_at_most_every_two_seconds(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 4096, "dirtyRateMiBps": 10}], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    kube.apply(migration("m2"))
    done = await wait_phase(kube, "m2", {"Succeeded", "Failed"})
    assert done["status"]["phase"] == "Succeeded"
    patches = [r for r in kube.log() if r.method == "PATCH" and r.name == "m2" and r.subresource == "status"]
    elapsed = done["status"]["totalTimeMs"] / 1000
    assert 8 < elapsed < 12
    # One patch per transition (5), plus progress at most every 2 s, plus the marker before the call.
    assert len(patches) <= 5 + 1 + elapsed / 2 + 1, len(patches)
    assert len(patches) >= 5 + 2  # progress was reported while it ran


async def test_a_finished_migration_is_not_run_again_by_a_restart_or_reapply(
    kube: ApiServer, world: str, operator_env: dict[str, str]
) -> None:
    from tests.operator.conftest import HANDLERS

    kube.apply(host("host-a", world, WEB))
    kube.apply(host("host-b", world))
    async with KopfOperator(kube, HANDLERS):
        kube.apply(migration("m3"))
        assert (await wait_phase(kube, "m3", {"Succeeded"}))["status"]["phase"] == "Succeeded"
    calls = world_state(world)["migrateCalls"]
    async with KopfOperator(kube, HANDLERS):
        kube.apply(migration("m3"))  # re-apply the same document, as GitOps does
        await until(lambda: any(r.method == "GET" for r in kube.log()), within=5)
        import asyncio

        await asyncio.sleep(2)
        assert kube.read("domainmigrations", "m3", NS)["status"]["phase"] == "Succeeded"  # type: ignore[index]
    assert world_state(world)["migrateCalls"] == calls == 1
