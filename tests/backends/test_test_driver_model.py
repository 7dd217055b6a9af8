"""The test driver's model against QEMU's rules: auto-converge, post-copy and its page faults,
and downtime as the time the guest ran nowhere.

The figures are for one guest: 1 GiB dirtying 900 MiB/s, sent at `bandwidth: 100` (MiB/s) over a
1000 MiB/s link, with the default 300 ms downtime limit.
"""

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.api.enums import MigrationFlag
from controller.api.status import DomainState
from controller.backends.protocol import Connection, HostConfig, JobInfo, JobPhase, MigrationRequest
from controller.backends.test.driver import TestDriver
from controller.backends.test.model import PAGE, MiB, Plan, Snapshot, evaluate, fault_stall
from controller.backends.test.world import snapshot_of

GiB = 1024 * MiB
DIRTY, CAP, LINK = 900 * MiB, 100 * MiB, 1000 * MiB


def guest(**changes: Any) -> Plan:
    fields: dict[str, Any] = {"dirty_bps": DIRTY, **changes}
    return Plan(start=0, memory=GiB, link_bps=LINK, bandwidth=[(0.0, CAP)], **fields)


def pass_ends(plan: Plan, until: float) -> list[tuple[float, Snapshot]]:
    """(time, state just after) for each sync, found by watching the iteration count."""
    ends, t, last = [], 0.0, 1
    while t < until:
        t += 0.01
        snap = evaluate(plan, t)
        if snap.iteration != last:
            ends.append((t, snap))
            last = snap.iteration
        if snap.outcome == "completed":
            break
    return ends


# Auto-converge


def test_auto_converge_throttles_every_second_pass_as_qemu_does_and_converges() -> None:
    plan = guest(auto_converge=(0.2, 0.1))
    done = evaluate(plan, 1000)
    # 20 passes (the first 19 of a full GiB: 900 MiB/s at up to 90 % throttle still dirties it
    # all in a 10.24 s pass), then a 7 MiB stop-and-copy.
    assert done.outcome == "completed"
    assert done.iteration == 21
    assert 192 < done.time < 193
    assert done.throttle == pytest.approx(0.99)
    assert done.downtime_ms == 7
    # dirty_rate_high_cnt reaches 2 at every second sync: 20 % after pass 2, then +10 points.
    throttles = [round(snap.throttle, 2) for _, snap in pass_ends(plan, 1000)]
    rising = [round(0.2 + 0.1 * step, 2) for step in range(8) for _ in range(2)]  # 0.2, 0.2, 0.3, ... 0.9
    assert throttles[:19] == [0.0, *rising, 0.99, 0.99]


def test_auto_converge_takes_its_initial_and_increment() -> None:
    throttles = [round(s.throttle, 2) for _, s in pass_ends(guest(auto_converge=(0.5, 0.25)), 1000)]
    assert throttles[:6] == [0.0, 0.5, 0.5, 0.75, 0.75, 0.99]


def test_auto_converge_leaves_a_guest_alone_that_dirties_less_than_half_of_what_is_sent() -> None:
    calm = evaluate(guest(dirty_bps=45 * MiB, auto_converge=(0.2, 0.1)), 1000)
    assert calm.outcome == "completed" and calm.throttle == 0.0
    busy = pass_ends(guest(dirty_bps=55 * MiB, auto_converge=(0.2, 0.1)), 1000)
    assert busy[1][1].throttle == pytest.approx(0.2)  # 55 % twice: the second sync throttles


def test_auto_converge_judges_periods_of_more_than_a_second_not_single_short_passes() -> None:
    # 100 MiB passes of 0.1 s that never shrink (dirty rate = link): QEMU adds passes up into
    # periods over a second, so the counter rises at about 1.1 s and 2.2 s, not at passes 2 and 3.
    plan = Plan(
        start=0, memory=100 * MiB, dirty_bps=LINK, link_bps=LINK, downtime=[(0.0, 0.01)], auto_converge=(0.2, 0.1)
    )
    assert evaluate(plan, 2.1).throttle == 0.0
    assert evaluate(plan, 2.3).throttle == pytest.approx(0.2)


def test_the_reported_figures_agree_with_each_other_at_every_instant() -> None:
    plan = guest(auto_converge=(0.2, 0.1))
    before = evaluate(plan, 0)
    for tenth in range(1, 1920):
        snap = evaluate(plan, tenth / 10)
        assert snap.outcome == "active" and not snap.paused
        assert snap.bps == CAP and snap.dirty_bps == pytest.approx(DIRTY * (1 - snap.throttle))
        assert snap.processed == pytest.approx(before.processed + CAP / 10, abs=2)  # sent at the reported rate
        assert 0 < snap.remaining <= GiB
        assert snap.iteration >= before.iteration and snap.throttle >= before.throttle
        before = snap


# Post-copy


def test_post_copy_sends_at_most_the_memory_at_link_speed_by_default() -> None:
    plan = guest(postcopy_at=1.0)
    switched = evaluate(plan, 1.0)
    # 924 MiB of pass 1 left and 900 MiB dirtied: the pages in both are sent once.
    left = 924 * MiB + 900 * MiB * (1 - 924 / 1024)
    assert switched.postcopy and switched.remaining == int(left) and switched.remaining <= GiB
    assert switched.dirty_bps == 0 and switched.bps == LINK  # max-postcopy-bandwidth defaults to no limit
    done = evaluate(plan, 100)
    assert done.outcome == "completed" and done.time == pytest.approx(1 + left / LINK)
    assert done.processed == pytest.approx(100 * MiB + left, abs=1)  # nothing resent after the switch
    assert done.downtime_ms == 10
    assert done.stalled_ms == 288 and done.postcopy_requests == 73_726


def test_post_copy_at_its_own_bandwidth_takes_what_is_left_over_that_bandwidth() -> None:
    done = evaluate(guest(postcopy_at=1.0, postcopy_bps=CAP), 100)
    assert done.outcome == "completed"
    assert 1 + 1000 * MiB / CAP < done.time <= 1 + GiB / CAP  # 11.12 s
    assert done.time == pytest.approx(11.119, abs=0.001)
    assert done.downtime_ms == 10
    # The guest touches missing pages faster than 100 MiB/s brings them: it waits most of the time.
    assert done.stalled_ms == 7511 and done.postcopy_requests == 192_288
    assert done.postcopy_requests * PAGE == pytest.approx(CAP * done.stalled_ms / 1000, rel=1e-3)


def test_the_fault_stall_is_the_integral_it_claims() -> None:
    before, after, rate, touch = 1000.0 * MiB, 100.0 * MiB, 100.0 * MiB, 900.0 * MiB
    steps, waited, left = 100_000, 0.0, before
    dt = (before - after) / rate / steps
    for _ in range(steps):
        wanted = touch * left / GiB
        waited += wanted / (rate + wanted) * dt
        left -= rate * dt
    assert fault_stall(before, after, rate, touch, GiB) == pytest.approx(waited, rel=1e-3)
    assert fault_stall(before, after, rate, 0.0, GiB) == 0.0


@given(
    memory_mib=st.integers(1, 4096),
    dirty=st.floats(0, 3000),
    cap=st.floats(10, 3000),
    postcopy=st.one_of(st.none(), st.floats(10, 3000)),
    switch=st.floats(0, 60),
)
def test_post_copy_never_takes_longer_than_the_memory_over_its_rate(
    memory_mib: int, dirty: float, cap: float, postcopy: float | None, switch: float
) -> None:
    rate = min(postcopy or LINK / MiB, LINK / MiB) * MiB
    plan = Plan(
        start=0,
        memory=memory_mib * MiB,
        dirty_bps=dirty * MiB,
        link_bps=LINK,
        bandwidth=[(0.0, cap * MiB)],
        postcopy_bps=postcopy and postcopy * MiB,
        postcopy_at=switch,
    )
    done = evaluate(plan, switch + plan.memory / rate + 1)
    assert done.outcome == "completed"
    if done.postcopy:
        assert done.time <= switch + plan.memory / rate + 1e-3
        assert done.stalled_ms <= round((done.time - switch) * 1000) + 1
        assert done.postcopy_requests * PAGE <= plan.memory
        assert done.downtime_ms == 10


# Downtime


def test_a_suspended_guest_is_down_from_the_suspend_to_completion() -> None:
    plan = guest(suspended_at=2.0)
    at_suspend = evaluate(plan, 2.0)
    assert at_suspend.paused and at_suspend.dirty_bps == 0
    done = evaluate(plan, 100)
    # The rest of pass 1 (824 MiB), then everything dirtied before the suspend (all of it) again.
    assert done.outcome == "completed" and done.time == pytest.approx(2 + (824 + 1024) * MiB / CAP)
    assert done.downtime_ms == round((done.time - 2.0) * 1000) == 18_480


def test_stop_and_copy_goes_at_link_speed_and_a_non_live_guest_is_down_throughout() -> None:
    # 20 MiB/s of dirt: passes of 1024, 204.8, 41 and 8.2 MiB; the last goes at 1000 MiB/s.
    live = evaluate(guest(dirty_bps=20 * MiB), 100)
    assert live.outcome == "completed" and live.downtime_ms == 8
    offline = evaluate(guest(live=False), 100)
    assert offline.outcome == "completed" and offline.downtime_ms == round(offline.time * 1000) == 10_240


# Through the driver, on the loop clock


def hosts(memory_mib: int = 1024) -> tuple[HostConfig, HostConfig]:
    web = {"name": "web", "memoryMiB": memory_mib, "dirtyRateMiBps": 900.0}
    return (
        HostConfig("a", "test", "test:///default", options={"domains": [web], "linkMiBps": 1000.0}),
        HostConfig("b", "test", "test:///default", options={"linkMiBps": 1000.0}),
    )


async def start(flags: set[MigrationFlag], **params: int) -> tuple[TestDriver, Connection, Connection]:
    driver = TestDriver()
    a, b = hosts()
    source, destination = await driver.connect(a), await driver.connect(b)
    request = MigrationRequest(
        "web", "b", flags=frozenset(flags | {MigrationFlag.live}), params={"bandwidth": 100, **params}
    )
    await source.migrate(destination, request)
    return driver, source, destination


async def finish(source: Connection) -> JobInfo:
    for _ in range(1000):
        job = await source.job("web")
        if job.phase.finished:
            return job
        await asyncio.sleep(1)
    raise AssertionError("the migration did not finish")


def final(driver: TestDriver) -> Snapshot:
    world = driver.world("test:///default")
    return snapshot_of(world.read()["jobs"]["a/web"], world.clock())


@pytest.mark.looptime
async def test_driver_auto_converge_reports_the_throttled_dirty_rate() -> None:
    driver, source, _ = await start(
        {MigrationFlag.autoConverge}, **{"auto_converge.initial": 20, "auto_converge.increment": 10}
    )
    await asyncio.sleep(21)  # just after the second sync
    job = await source.job("web")
    assert job.phase is JobPhase.active and job.iteration == 3
    assert job.dirty_rate == int(DIRTY * 0.8) and job.bytes_per_second == CAP
    done = await finish(source)
    assert done.phase is JobPhase.completed and done.iteration == 21 and done.downtime_ms == 7
    assert done.elapsed_ms is not None and 192_000 < done.elapsed_ms < 193_000
    assert final(driver).throttle == pytest.approx(0.99)


@pytest.mark.looptime
async def test_driver_post_copy_runs_the_guest_at_the_destination_and_counts_its_faults() -> None:
    driver, source, destination = await start({MigrationFlag.postCopy})
    await asyncio.sleep(1)
    await source.start_postcopy("web")
    job = await source.job("web")
    assert job.phase is JobPhase.postcopy and job.data_remaining is not None and job.data_remaining <= GiB
    assert job.dirty_rate == 0 and job.bytes_per_second == LINK
    assert [(d.name, d.state) for d in await source.list_domains()] == [("web", DomainState.paused)]
    assert [(d.name, d.state) for d in await destination.list_domains()] == [("web", DomainState.running)]
    done = await finish(source)
    assert done.phase is JobPhase.completed and done.downtime_ms == 10
    assert done.elapsed_ms is not None and 2000 <= done.elapsed_ms <= 2100  # 1 s + 1012 MiB at the link's speed
    snap = final(driver)
    assert snap.stalled_ms == 288 and snap.postcopy_requests == 73_726


@pytest.mark.looptime
async def test_driver_post_copy_at_its_own_bandwidth() -> None:
    driver, source, _ = await start({MigrationFlag.postCopy}, **{"bandwidth.postcopy": 100})
    await asyncio.sleep(1)
    await source.start_postcopy("web")
    done = await finish(source)
    assert done.elapsed_ms is not None and 11_000 < done.elapsed_ms <= 1000 + 10_240
    assert done.downtime_ms == 10 and final(driver).stalled_ms == 7511


@pytest.mark.looptime
async def test_driver_suspend_reports_the_pause_until_completion_as_downtime() -> None:
    _, source, destination = await start(set())
    await asyncio.sleep(2)
    await source.suspend("web")
    paused = await source.lookup("web")
    assert paused is not None and paused.state is DomainState.paused
    assert (await source.job("web")).dirty_rate == 0
    done = await finish(source)
    assert done.phase is JobPhase.completed and done.elapsed_ms is not None
    assert done.downtime_ms == done.elapsed_ms - 2000 == 18_480
    arrived = await destination.lookup("web")
    assert arrived is not None and arrived.running
