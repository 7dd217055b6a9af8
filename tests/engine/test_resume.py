"""Kill the engine at every point it reports, start a new one from the saved status: one migrate call."""

import asyncio

import pytest

from controller.api import DomainMigration, DomainMigrationStatus, Phase, Reason
from controller.engine import Transition
from controller.engine.run import Marker, Sink, marker_of, must_save
from tests.engine.conftest import Crash, Lab, Recorder, make_lab, migration

pytestmark = pytest.mark.looptime


async def count_reports(flags: list[str]) -> int:
    lab = make_lab()
    rec = Recorder()
    await lab.run(migration(flags=flags), rec)
    return len(rec.statuses)


async def crash_and_resume(
    lab: Lab, flags: list[str], crash_at: int, downtime: float
) -> tuple[Recorder, DomainMigration]:
    original = migration(flags=flags)
    rec = Recorder(crash_at=crash_at)
    with pytest.raises(Crash):
        await lab.run(original, rec)
    saved = migration(flags=flags)
    saved.status = rec.statuses[-1].model_copy(deep=True)
    await asyncio.sleep(downtime)  # the operator is down; the hypervisor carries on
    after = Recorder()
    saved.status = await lab.run(saved, after)
    return after, saved


@pytest.mark.parametrize("downtime", [0.0, 1.0, 30.0])
async def test_resume_after_a_crash_at_every_report(downtime: float) -> None:
    flags = ["live", "undefineSource"]
    total = await count_reports(flags)
    assert total > 6
    for crash_at in range(1, total):
        lab = make_lab()
        _, resumed = await crash_and_resume(lab, flags, crash_at, downtime)
        assert resumed.status.phase is Phase.Succeeded, (crash_at, resumed.status.message)
        assert lab.migrate_calls == 1, crash_at
        assert lab.where() == {"b": "running"}, crash_at


def saved_as_the_operator_saves(saved: DomainMigration, rec: Recorder) -> Sink:
    """A sink that keeps in `saved` what the operator would have stored: transitions and whatever
    `must_save` says must be durable, not progress-only reports."""
    marker: Marker | None = None

    async def durable(status: DomainMigrationStatus, transition: Transition | None) -> None:
        nonlocal marker
        if transition is not None or must_save(marker, status):
            saved.status = status.model_copy(deep=True)
            marker = marker_of(status)
        await rec(status, transition)

    return durable


async def test_a_job_that_fails_while_the_engine_is_down_ends_target_failed() -> None:
    lab = make_lab(b={"faults": {"destinationDiesAt": 0.6}})
    rec = Recorder()
    # Crash at the first progress report while Migrating.
    for n in range(1, 20):
        lab = make_lab(b={"faults": {"destinationDiesAt": 0.6}})
        rec = Recorder(crash_at=n)
        with pytest.raises(Crash):
            await lab.run(migration(), rec)
        if rec.statuses[-1].progress is not None:
            break
    saved = migration()
    saved.status = rec.statuses[-1]
    await asyncio.sleep(10)
    status = await lab.run(saved)
    assert status.phase is Phase.Failed and status.reason is Reason.TargetFailed
    assert lab.migrate_calls == 1 and lab.where() == {"a": "running"}


async def test_a_crash_between_the_saved_marker_and_the_call_starts_it_once() -> None:
    lab = make_lab()
    saved = migration()
    rec = Recorder()
    for n in range(1, 20):
        lab, rec = make_lab(), Recorder(crash_at=n)
        with pytest.raises(Crash):
            await lab.run(migration(), rec)
        if rec.statuses[-1].migration_start_time is not None:
            break
    assert lab.migrate_calls == 0  # the marker is saved before the call
    saved.status = rec.statuses[-1]
    status = await lab.run(saved)
    assert status.phase is Phase.Succeeded and lab.migrate_calls == 1


async def test_resume_from_what_a_throttled_sink_saved() -> None:
    """Like the operator: progress-only reports are not saved; transitions and the marker are."""
    flags = ["live", "undefineSource"]
    total = await count_reports(flags)
    for crash_at in range(1, total):
        lab = make_lab()
        rec = Recorder(crash_at=crash_at)
        saved = migration(flags=flags)
        durable = saved_as_the_operator_saves(saved, rec)

        with pytest.raises(Crash):
            await lab.engine().run(migration(flags=flags), durable)
        await asyncio.sleep(1.0)
        status = await lab.run(saved)
        assert status.phase is Phase.Succeeded, (crash_at, status.message)
        assert lab.migrate_calls == 1, crash_at


async def test_a_crash_after_the_engine_aborted_a_stalled_job_ends_stalled_not_aborted() -> None:
    """The engine's own abort (timeouts.progress) is saved with its reason before the abort call:
    a run resumed after a crash finds the job cancelled and says why (Failed, Stalled), not Aborted
    as if the user had asked. Saved as the operator saves: transitions and must_save only."""
    spinner = [{"name": "web", "memoryMiB": 2048, "dirtyRateMiBps": 1500}]
    spec = {"timeouts": {"progress": 20}}
    for crash_at in range(1, 200):
        lab = make_lab(domains=spinner)
        rec = Recorder(crash_at=crash_at)
        saved = migration(**spec)
        durable = saved_as_the_operator_saves(saved, rec)

        await lab.seed()
        with pytest.raises(Crash):
            await lab.engine().run(migration(**spec), durable)
        jobs = list(lab.state["jobs"].values())
        if jobs and jobs[0]["plan"].get("aborted_at") is not None:
            break  # the engine died with the abort sent, before it said so
    else:
        pytest.fail("the engine never aborted the stalled job")
    assert saved.status.phase is Phase.Migrating and saved.status.reason is Reason.Stalled
    await asyncio.sleep(1.0)
    status = await lab.run(saved)
    assert (status.phase, status.reason) == (Phase.Failed, Reason.Stalled), status.message
    assert "no progress for 20 s" in (status.message or "")
    assert lab.migrate_calls == 1 and lab.where() == {"a": "running"}
