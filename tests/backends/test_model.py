"""The test driver's migration model: does it converge when QEMU would, and not when it would not?"""

from hypothesis import given
from hypothesis import strategies as st

from controller.backends.test.model import MiB, Plan, evaluate

GiB = 1024 * MiB


def test_an_idle_guest_takes_one_pass_and_a_tiny_stop_and_copy() -> None:
    plan = Plan(start=0, memory=2 * GiB, dirty_bps=0, link_bps=1000 * MiB)
    done = evaluate(plan, 100)
    assert done.outcome == "completed"
    assert abs(done.time - 2.048) < 0.01
    assert done.iteration == 2 and done.downtime_ms == 1


def test_a_guest_dirtying_slower_than_the_link_converges_in_a_few_passes() -> None:
    plan = Plan(start=10, memory=2 * GiB, dirty_bps=200 * MiB, link_bps=1000 * MiB)
    mid = evaluate(plan, 11)
    assert mid.outcome == "active" and mid.iteration == 1
    assert mid.processed == 1000 * MiB
    done = evaluate(plan, 100)
    assert done.outcome == "completed" and 2 < done.iteration < 6
    assert done.downtime_ms is not None and done.downtime_ms <= 300
    assert done.processed > 2 * GiB  # resent dirty pages count too


def test_a_guest_dirtying_faster_than_the_link_never_converges() -> None:
    plan = Plan(start=0, memory=1 * GiB, dirty_bps=1200 * MiB, link_bps=1000 * MiB)
    later = evaluate(plan, 600)
    assert later.outcome == "active"
    assert later.iteration > 100
    assert later.remaining == 1 * GiB


def test_a_larger_downtime_lets_it_switch_over() -> None:
    plan = Plan(start=0, memory=1 * GiB, dirty_bps=1000 * MiB, link_bps=1000 * MiB)
    assert evaluate(plan, 60).outcome == "active"
    plan.downtime.append((30.0, 2.0))
    done = evaluate(plan, 60)
    assert done.outcome == "completed" and done.time > 30


def test_bandwidth_cap_changes_live() -> None:
    plan = Plan(start=0, memory=1 * GiB, dirty_bps=0, link_bps=1000 * MiB, bandwidth=[(0, 100 * MiB)])
    assert evaluate(plan, 1).processed == 100 * MiB
    plan.bandwidth.append((1.0, 500 * MiB))
    assert evaluate(plan, 2).processed == 600 * MiB


def test_auto_converge_throttles_until_it_converges() -> None:
    plan = Plan(start=0, memory=1 * GiB, dirty_bps=2000 * MiB, link_bps=1000 * MiB, auto_converge=(0.2, 0.1))
    done = evaluate(plan, 120)
    assert done.outcome == "completed" and done.throttle >= 0.5


def test_post_copy_completes_a_guest_that_would_not() -> None:
    plan = Plan(start=0, memory=1 * GiB, dirty_bps=2000 * MiB, link_bps=1000 * MiB, postcopy_at=5.0)
    during = evaluate(plan, 5.5)
    assert during.outcome == "postcopy" and during.postcopy
    done = evaluate(plan, 60)
    assert done.outcome == "completed" and done.postcopy and done.time < 7.1


def test_suspending_the_guest_forces_completion() -> None:
    plan = Plan(start=0, memory=1 * GiB, dirty_bps=2000 * MiB, link_bps=1000 * MiB, suspended_at=5.0)
    assert evaluate(plan, 60).outcome == "completed"


def test_abort_and_failures() -> None:
    base = dict(start=0.0, memory=1 * GiB, dirty_bps=2000 * MiB, link_bps=1000 * MiB)
    assert evaluate(Plan(**base, aborted_at=3.0), 10).outcome == "cancelled"  # type: ignore[arg-type]
    failed = evaluate(Plan(**base, fail_at=0.5, fail_side="destination"), 10)  # type: ignore[arg-type]
    assert failed.outcome == "failed" and failed.failed_side == "destination" and abs(failed.time - 0.512) < 0.01
    # Post-copy cannot be aborted: the guest already runs on the destination.
    assert evaluate(Plan(**base, postcopy_at=2.0, aborted_at=2.5), 60).outcome == "completed"  # type: ignore[arg-type]


@given(
    memory_mib=st.integers(1, 8192),
    dirty=st.floats(0, 3000),
    link=st.floats(10, 3000),
    t1=st.floats(0, 300),
    dt=st.floats(0, 300),
    start=st.sampled_from([0.0, 1764118663.123]),  # loop clock and wall clock
)
def test_progress_never_goes_backwards_and_remaining_stays_within_memory(
    memory_mib: int, dirty: float, link: float, t1: float, dt: float, start: float
) -> None:
    t1 += start
    plan = Plan(start=start, memory=memory_mib * MiB, dirty_bps=dirty * MiB, link_bps=link * MiB)
    a, b = evaluate(plan, t1), evaluate(plan, t1 + dt)
    assert a.processed <= b.processed
    assert 0 <= b.remaining <= plan.memory
    assert a.iteration <= b.iteration
    if a.outcome == "completed":
        assert b == a
