"""Abort at every phase: before the migration nothing moves; during it the source keeps running."""

import asyncio

import pytest

from controller.api import Phase, Reason
from controller.engine import Controls
from tests.engine.conftest import Lab, Recorder, make_lab, migration

pytestmark = pytest.mark.looptime


async def test_abort_in_the_spec_before_it_starts(lab: Lab) -> None:
    rec = Recorder()
    status = await lab.run(migration(abort=True), rec)
    assert status.phase is Phase.Aborted and status.reason is Reason.Aborted
    assert "nothing moved" in (status.message or "")
    assert lab.migrate_calls == 0


@pytest.mark.parametrize("phase", [Phase.Validating, Phase.Preparing])
async def test_abort_before_the_migrate_call(lab: Lab, phase: Phase) -> None:
    controls = Controls()
    rec = Recorder(hooks={phase: controls.request_abort})
    status = await lab.run(migration(), rec, controls)
    assert status.phase is Phase.Aborted and rec.phases[-1] is Phase.Aborted
    assert lab.migrate_calls == 0 and lab.where() == {"a": "running"}


async def test_abort_as_migrating_begins(lab: Lab) -> None:
    controls = Controls()
    rec = Recorder(hooks={Phase.Migrating: controls.request_abort})
    status = await lab.run(migration(), rec, controls)
    assert status.phase is Phase.Aborted and lab.migrate_calls == 0 and lab.where() == {"a": "running"}


async def test_abort_while_migrating_cancels_the_job_and_the_source_runs(lab: Lab) -> None:
    controls = Controls()
    task = asyncio.create_task(lab.run(migration(flags=["live", "undefineSource"]), controls=controls))
    await asyncio.sleep(1.0)
    controls.request_abort()
    status = await task
    assert status.phase is Phase.Aborted and status.reason is Reason.Aborted
    assert "web runs on a" in (status.message or "")
    assert lab.where() == {"a": "running"}
    assert lab.migrate_calls == 1
    assert {c.type for c in status.conditions if c.status == "True"} == {"Validated", "Aborted", "Stalled"}


async def test_abort_of_a_non_live_migration_resumes_the_paused_source(lab: Lab) -> None:
    controls = Controls()
    task = asyncio.create_task(lab.run(migration(flags=[]), controls=controls))
    await asyncio.sleep(1.0)
    assert lab.where() == {"a": "paused"}
    controls.request_abort()
    assert (await task).phase is Phase.Aborted
    assert lab.where() == {"a": "running"}


async def test_abort_after_the_switch_over_is_too_late(lab: Lab) -> None:
    controls = Controls()
    rec = Recorder(hooks={Phase.Verifying: controls.request_abort})
    status = await lab.run(migration(), rec, controls)
    assert status.phase is Phase.Succeeded and lab.where() == {"a": "shutoff", "b": "running"}


async def test_abort_during_post_copy_cannot_take_the_guest_back() -> None:
    lab = make_lab(domains=[{"name": "web", "memoryMiB": 4096, "dirtyRateMiBps": 2000}])
    controls = Controls()
    task = asyncio.create_task(lab.run(migration(flags=["live", "postCopy"]), controls=controls))
    await asyncio.sleep(3)
    controls.request_force_complete()
    await asyncio.sleep(1.0)
    controls.request_abort()
    recs: list[str] = []
    status = await task
    recs.append(status.message or "")
    assert status.phase is Phase.Succeeded and lab.where() == {"a": "shutoff", "b": "running"}
