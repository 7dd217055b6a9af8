"""Migrations that finish: the forecast, the convergence schedule, force-complete, and policies
that are permissions, on the test driver (QEMU's rules, controller/backends/test/model.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controller.api import Phase
from controller.api.enums import Reason
from controller.api.migration_policy import MigrationPolicySpec
from controller.api.status import Outlook
from controller.engine import Controls
from tests.engine.conftest import NarrowDriver, Recorder, make_lab, migration

pytestmark = pytest.mark.looptime

GIB = 1024**3
# The issue's guest: 1 GiB dirtying 900 MiB/s, sent through 100 MiB/s.
SPINNER = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 900}]
THROUGH_100 = {"params": {"bandwidth": 100}}
RAM_OVER_BANDWIDTH_S = 1024 / 100


def with_policy(spec: dict[str, Any], **policy: Any) -> Any:
    m = migration(**spec)
    m.status.policy = "p"
    m.status.applied_policy = MigrationPolicySpec.parse(policy).dump()
    return m


def forecasts(rec: Recorder) -> list[Outlook]:
    return [s.progress.forecast for s in rec.statuses if s.progress and s.progress.forecast]


async def test_the_issues_guest_switches_to_post_copy_on_the_forecast_long_before_any_timeout() -> None:
    lab, rec = make_lab(domains=SPINNER), Recorder()
    status = await lab.run(with_policy(THROUGH_100, allowPostCopy=True, allowAutoConverge=True), rec)
    assert status.phase is Phase.Succeeded, status.message
    assert status.total_time_ms is not None and status.total_time_ms / 1000 <= 1.5 * RAM_OVER_BANDWIDTH_S
    assert Outlook.NotConverging in forecasts(rec)
    assert status.schedule == "default (policy p)"
    [step] = [c for c in status.convergence if c.outcome == "Taken"]
    assert step.action == "postCopy" and step.forecast is Outlook.NotConverging
    assert step.elapsed_ms is not None and step.elapsed_ms < 10_000  # long before the 150 s clocks
    assert step.dirty_rate_bytes_per_second and step.bytes_per_second
    assert step.dirty_rate_bytes_per_second > step.bytes_per_second  # the figures that triggered it
    assert lab.where()["b"] == "running" and lab.where().get("a") != "running"


async def test_while_not_converging_there_is_no_eta() -> None:
    lab, rec = make_lab(domains=SPINNER), Recorder()
    await lab.run(with_policy(THROUGH_100, allowPostCopy=True), rec)
    stuck = [s.progress for s in rec.statuses if s.progress and s.progress.forecast is Outlook.NotConverging]
    assert stuck and all(p.eta_seconds is None and p.expected_downtime_ms is None for p in stuck)


async def test_without_a_policy_it_fails_stalled_or_timed_out_in_bounded_time_and_the_source_runs() -> None:
    lab = make_lab(domains=SPINNER)
    loop = asyncio.get_running_loop()
    began = loop.time()
    status = await lab.run(migration(**THROUGH_100))
    assert status.phase is Phase.Failed and status.reason in (Reason.Stalled, Reason.Timeout), status.message
    assert loop.time() - began < 200  # KubeVirt's 150 s clocks, and the abort
    assert status.schedule is None and status.convergence == []
    assert lab.where() == {"a": "running"}


async def test_a_converging_guests_eta_is_what_it_then_takes() -> None:
    lab, rec = make_lab(domains=[{"name": "web", "memoryMiB": 2048, "dirtyRateMiBps": 50}]), Recorder()
    status = await lab.run(migration(params={"bandwidth": 200}), rec)
    assert status.phase is Phase.Succeeded and status.total_time_ms is not None
    early = next(s.progress for s in rec.statuses if s.progress and s.progress.eta_seconds and s.progress.elapsed_ms)
    assert early.forecast is Outlook.Converging and early.expected_downtime_ms is not None
    assert early.elapsed_ms is not None and early.eta_seconds is not None
    predicted = early.elapsed_ms / 1000 + early.eta_seconds
    assert abs(predicted - status.total_time_ms / 1000) < 0.15 * status.total_time_ms / 1000
    assert early.eta_seconds > 2 * 2048 / 200 * 0.4  # more than one pass: it counts the dirty rate


async def test_a_spec_schedule_is_followed_in_order_each_step_on_its_own_clock() -> None:
    steps = [
        {"when": {"notConvergingFor": 2}, "do": {"raiseBandwidth": 150}},
        {"when": {"notConvergingFor": 2}, "do": {"raiseDowntime": 400}},
        {"when": {"iteration": 1, "notConvergingFor": 1}, "do": {"postCopy": True}},
    ]
    lab = make_lab(domains=SPINNER)
    status = await lab.run(migration(**THROUGH_100, convergence=steps))
    assert status.phase is Phase.Succeeded, status.message
    assert [(c.action, c.outcome) for c in status.convergence] == [
        ("raiseBandwidth 150", "Taken"),
        ("raiseDowntime 400", "Taken"),  # a user's schedule is done as written, helpful or not
        ("postCopy", "Taken"),
    ]
    times = [c.elapsed_ms or 0 for c in status.convergence]
    assert times[1] - times[0] >= 2000 and times[2] - times[1] >= 1000
    assert "postCopy" in lab.state["jobs"]["a/web"]["flags"]  # enabled because a step may switch
    assert status.schedule == "spec"


async def test_the_default_schedule_passes_over_a_raise_that_cannot_help() -> None:
    lab = make_lab(domains=SPINNER)
    spec = {"params": {"bandwidth": 100, "downtime": 100}}
    status = await lab.run(with_policy(spec, allowPostCopy=True, maxDowntimeMs=500))
    assert status.phase is Phase.Succeeded
    raise_step, switch = status.convergence
    assert raise_step.action == "raiseDowntime 500" and raise_step.outcome == "Skipped"
    assert "still would not converge" in raise_step.message
    assert switch.action == "postCopy" and switch.outcome == "Taken"


async def test_the_default_schedule_raises_the_downtime_when_that_is_enough() -> None:
    guest = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 150}]
    lab = make_lab(domains=guest)
    spec = {"params": {"bandwidth": 100, "downtime": 100}}
    status = await lab.run(with_policy(spec, maxDowntimeMs=20_000, allowWorkloadDisruption=False))
    assert status.phase is Phase.Succeeded, status.message
    assert status.convergence[0].action == "raiseDowntime 20000" and status.convergence[0].outcome == "Taken"
    assert status.downtime_ms is not None and 100 < status.downtime_ms <= 20_000


async def test_an_abort_step_fails_not_converging_and_the_source_runs() -> None:
    lab = make_lab(domains=SPINNER)
    steps = [{"when": {"notConvergingFor": 3}, "do": {"abort": True}}]
    status = await lab.run(migration(**THROUGH_100, convergence=steps))
    assert status.phase is Phase.Failed and status.reason is Reason.NotConverging, status.message
    assert "convergence schedule" in (status.message or "")
    assert lab.where() == {"a": "running"}


async def test_a_pause_step_finishes_it_and_downtime_is_the_real_pause() -> None:
    lab = make_lab(domains=SPINNER)
    steps = [{"when": {"elapsed": 2}, "do": {"pause": True}}]
    status = await lab.run(migration(**THROUGH_100, convergence=steps))
    assert status.phase is Phase.Succeeded and status.downtime_ms is not None
    assert status.downtime_ms > 5_000  # paused from the step to the end, not "1 ms"
    assert lab.where()["b"] == "running" and lab.where().get("a") != "running"


async def test_an_empty_schedule_means_none() -> None:
    lab = make_lab(domains=SPINNER)
    status = await lab.run(with_policy({**THROUGH_100, "convergence": []}, allowPostCopy=True, progressTimeout=10))
    assert status.schedule is None and status.convergence == []


# -- force-complete ----------------------------------------------------------------------------


async def _force_after(seconds: float, controls: Controls) -> None:
    await asyncio.sleep(seconds)
    controls.request_force_complete()


async def test_force_complete_uses_post_copy_when_the_migration_may() -> None:
    lab, controls = make_lab(domains=SPINNER), Controls()
    pusher = asyncio.create_task(_force_after(3, controls))
    status = await lab.run(migration(flags=["live", "postCopy"], **THROUGH_100, convergence=[]), controls=controls)
    await pusher
    assert status.phase is Phase.Succeeded and status.progress is not None and status.progress.mode == "PostCopy"


async def test_force_complete_pauses_the_guest_otherwise() -> None:
    lab, controls = make_lab(domains=SPINNER), Controls()
    pusher = asyncio.create_task(_force_after(3, controls))
    status = await lab.run(migration(**THROUGH_100), controls=controls)
    await pusher
    assert status.phase is Phase.Succeeded and status.downtime_ms is not None and status.downtime_ms > 1000


async def test_force_complete_in_the_spec_from_the_start() -> None:
    lab = make_lab(domains=SPINNER)
    status = await lab.run(migration(**THROUGH_100, forceComplete=True))
    assert status.phase is Phase.Succeeded


async def test_force_complete_is_refused_with_a_reason_when_neither_is_allowed() -> None:
    lab, controls, rec = make_lab(domains=SPINNER), Controls(), Recorder()
    pusher = asyncio.create_task(_force_after(2, controls))
    policy = {"allowWorkloadDisruption": False, "progressTimeout": 10, "convergence": []}
    status = await lab.run(with_policy(THROUGH_100, **policy), rec, controls)
    await pusher
    said = [s.message or "" for s in rec.statuses]
    assert any("refused" in m and "allowWorkloadDisruption: false" in m for m in said)
    assert status.phase is Phase.Failed and lab.where() == {"a": "running"}


# -- policies are permissions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "policy", "field", "setting"),
    [
        ({"flags": ["live", "postCopy"]}, {"allowPostCopy": False}, "spec.flags[1]", "allowPostCopy: false"),
        ({"flags": ["live", "autoConverge"]}, {"allowAutoConverge": False}, "spec.flags[1]", "allowAutoConverge"),
        ({"flags": ["live", "paused"]}, {"allowWorkloadDisruption": False}, "spec.flags[1]", "allowWorkload"),
        (
            {"convergence": [{"when": {"iteration": 2}, "do": {"postCopy": True}}]},
            {"allowPostCopy": False},
            "spec.convergence[0].do.postCopy",
            "allowPostCopy: false",
        ),
        (
            {"convergence": [{"when": {"iteration": 2}, "do": {"pause": True}}]},
            {"allowWorkloadDisruption": False},
            "spec.convergence[0].do.pause",
            "allowWorkloadDisruption: false",
        ),
        ({"params": {"downtime": 900}}, {"maxDowntimeMs": 500}, "spec.params[downtime]", "maxDowntimeMs: 500"),
        (
            {"convergence": [{"when": {"iteration": 2}, "do": {"raiseDowntime": 600}}]},
            {"maxDowntimeMs": 500},
            "spec.convergence[0].do.raiseDowntime",
            "maxDowntimeMs: 500",
        ),
        (
            {"forceComplete": True},
            {"allowPostCopy": False, "allowWorkloadDisruption": False},
            "spec.forceComplete",
            "allowPostCopy: false, allowWorkloadDisruption: false",
        ),
    ],
)
async def test_what_a_policy_forbids_is_refused_naming_the_policy(
    spec: dict[str, Any], policy: dict[str, Any], field: str, setting: str
) -> None:
    lab = make_lab(domains=[{"name": "web", "memoryMiB": 256}])
    status = await lab.run(with_policy(spec, **policy))
    assert status.phase is Phase.Failed and status.reason is Reason.PolicyForbids
    assert f"{field}: PolicyForbids: MigrationPolicy p does not allow" in (status.message or "")
    assert setting in (status.message or "")
    assert lab.migrate_calls == 0 and lab.where() == {"a": "running"}


async def test_unset_permissions_grant() -> None:
    lab = make_lab(domains=[{"name": "web", "memoryMiB": 256}])
    spec = {"flags": ["live", "postCopy", "autoConverge"], "params": {"downtime": 900}}
    status = await lab.run(with_policy(spec, maxDowntimeMs=1000))
    assert status.phase is Phase.Succeeded, status.message


async def test_max_downtime_is_also_the_default_downtime() -> None:
    lab = make_lab(domains=[{"name": "web", "memoryMiB": 256}])
    status = await lab.run(with_policy({}, maxDowntimeMs=250, convergence=[]))
    assert status.phase is Phase.Succeeded
    assert lab.state["jobs"]["a/web"]["plan"]["downtime"][0][1] == 0.25


async def test_completion_timeout_per_gib_from_the_policy_and_no_hidden_floor() -> None:
    lab = make_lab(domains=SPINNER)
    status = await lab.run(with_policy(THROUGH_100, completionTimeoutPerGiB=2, convergence=[], onTimeout="abort"))
    assert status.phase is Phase.Failed and status.reason is Reason.Timeout
    assert "not completed within 2 s" in (status.message or "")


async def test_completion_per_gib_of_one_on_one_gib_times_out_at_one_second() -> None:
    lab = make_lab(domains=SPINNER)
    status = await lab.run(migration(**THROUGH_100, timeouts={"completionPerGiB": 1}))
    assert status.reason is Reason.Timeout and "not completed within 1 s" in (status.message or "")


async def test_on_timeout_force_complete_pauses_when_post_copy_is_not_enabled() -> None:
    lab = make_lab(domains=SPINNER)
    status = await lab.run(with_policy(THROUGH_100, progressTimeout=5, onTimeout="forceComplete", convergence=[]))
    assert status.phase is Phase.Succeeded and status.downtime_ms is not None and status.downtime_ms > 1000


async def test_on_timeout_force_complete_may_not_pause_when_disruption_is_forbidden() -> None:
    lab = make_lab(domains=SPINNER)
    policy = {"progressTimeout": 5, "onTimeout": "forceComplete", "convergence": [], "allowWorkloadDisruption": False}
    status = await lab.run(with_policy(THROUGH_100, **policy))
    assert status.phase is Phase.Failed and status.reason is Reason.Stalled
    assert lab.where() == {"a": "running"}


async def test_what_a_driver_cannot_do_is_said_when_it_is_admitted() -> None:
    lab = make_lab(domains=[{"name": "web", "memoryMiB": 256}])
    lab.driver = NarrowDriver()  # the 2007 Xen driver's capabilities: no abort, no figures, no force
    status = await lab.run(migration())
    assert status.phase is Phase.Succeeded
    said = " ".join(status.limitations)
    assert "cannot abort a running migration" in said and "reports no progress figures" in said
    assert "nothing can force completion" in said
    lab = make_lab(domains=[{"name": "web", "memoryMiB": 256}])
    assert (await lab.run(migration())).limitations == []


async def test_a_step_the_driver_cannot_take_is_refused_naming_it() -> None:
    lab = make_lab(domains=[{"name": "web", "memoryMiB": 256}])
    lab.driver = NarrowDriver()
    steps = [{"when": {"notConvergingFor": 5}, "do": {"raiseDowntime": 500}}]
    status = await lab.run(migration(convergence=steps))
    assert status.phase is Phase.Failed and status.reason is Reason.NoSupport
    assert "cannot take the step raiseDowntime" in (status.message or "")
    assert lab.migrate_calls == 0
