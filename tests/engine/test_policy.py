"""A MigrationPolicy's defaults reach the hypervisor only where the spec is silent and the driver can."""

import pytest

from controller.api import Phase
from controller.api.migration_policy import MigrationPolicySpec
from tests.engine.conftest import NarrowDriver, Recorder, make_lab, migration

pytestmark = pytest.mark.looptime

IDLE = [{"name": "web", "memoryMiB": 1024}]
SPINNER = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 1500}]


def with_policy(spec: dict[str, object], **policy: object) -> object:
    m = migration(**spec)
    m.status.policy = "p"
    m.status.applied_policy = MigrationPolicySpec.parse(policy).dump()
    return m


async def test_policy_bandwidth_applies_when_the_spec_is_silent() -> None:
    lab = make_lab(domains=IDLE)
    status = await lab.run(with_policy({}, bandwidthPerMigration=100))  # type: ignore[arg-type]
    assert status.phase is Phase.Succeeded
    assert status.progress is not None and status.progress.bytes_per_second == 100 * 1024 * 1024
    assert lab.state["jobs"]["a/web"]["plan"]["bandwidth"][0][1] == 100 * 1024 * 1024


async def test_the_spec_wins_over_the_policy() -> None:
    lab = make_lab(domains=IDLE)
    status = await lab.run(with_policy({"params": {"bandwidth": 500}}, bandwidthPerMigration=100))  # type: ignore[arg-type]
    assert status.progress is not None and status.progress.bytes_per_second == 500 * 1024 * 1024


async def test_allow_post_copy_lets_a_stuck_guest_finish() -> None:
    lab = make_lab(domains=SPINNER)
    status = await lab.run(with_policy({}, allowPostCopy=True, progressTimeout=10))  # type: ignore[arg-type]
    assert status.phase is Phase.Succeeded and status.progress is not None
    assert status.progress.mode == "PostCopy"
    assert "postCopy" in lab.state["jobs"]["a/web"]["flags"]


async def test_policy_abort_on_timeout_and_its_clock() -> None:
    lab = make_lab(domains=SPINNER)
    # No convergence schedule (an empty one), so the timeout and its action are what act.
    policy = {"allowPostCopy": True, "progressTimeout": 10, "onTimeout": "abort", "convergence": []}
    status = await lab.run(with_policy({}, **policy))  # type: ignore[arg-type]
    assert status.phase is Phase.Failed and status.reason is not None and status.reason.value == "Stalled"
    assert "no progress for 10 s" in (status.message or "")


async def test_what_the_driver_cannot_do_is_left_out_not_refused() -> None:
    lab = make_lab()
    lab.driver = NarrowDriver()
    rec = Recorder()
    status = await lab.run(with_policy({}, allowAutoConverge=True, bandwidthPerMigration=10), rec)  # type: ignore[arg-type]
    assert status.phase is Phase.Succeeded, status.message
    job = lab.state["jobs"]["a/web"]
    assert job["flags"] == ["live"] and job["plan"]["bandwidth"][0][1] == 0
