"""The test driver's migration model: pre-copy passes, switch-over, post-copy, as QEMU does them.

A job is a plan (its start time, the guest, the link, and every change made to it since) and
its state at any instant is computed from that plan, not advanced by a task: so a job keeps
"running" while no process watches it, as a real hypervisor's does.

Pre-copy: the first pass sends all memory; each later pass sends what the guest dirtied during
the one before. When what is left would go in less than the downtime limit, the guest pauses
and the rest is sent (stop-and-copy). A guest that dirties as fast as the link sends never
gets there. Auto-converge throttles the guest's dirtying further on each pass; post-copy
switches the guest to the destination and sends the rest with no dirtying; suspending the
guest (force-complete) stops the dirtying.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from controller.api.spec import Side

MiB = 1024 * 1024
DEFAULT_DOWNTIME_S = 0.3  # QEMU's downtime-limit default
POSTCOPY_SWITCH_S = 0.01  # device state only
EPSILON = 1e-6
MAX_STEPS = 200_000

Outcome = Literal["active", "postcopy", "completed", "failed", "cancelled"]


@dataclass
class Plan:
    start: float
    memory: int  # bytes
    dirty_bps: float
    link_bps: float
    live: bool = True
    offline: bool = False
    bandwidth: list[tuple[float, float]] = field(default_factory=list)  # (from time, bytes/s); 0 = link
    downtime: list[tuple[float, float]] = field(default_factory=list)  # (from time, seconds)
    postcopy_bps: float | None = None
    auto_converge: tuple[float, float] | None = None  # initial, increment (fractions)
    postcopy_at: float | None = None
    suspended_at: float | None = None
    aborted_at: float | None = None
    fail_at: float | None = None  # fraction of memory processed
    fail_side: Side | None = None


@dataclass
class Snapshot:
    outcome: Outcome
    time: float  # when this state began (for a finished job: when it finished)
    total: int
    processed: int
    remaining: int
    bps: float
    dirty_bps: float
    iteration: int
    postcopy: bool = False
    downtime_ms: int | None = None
    failed_side: Side | None = None
    throttle: float = 0.0


def _at(changes: list[tuple[float, float]], t: float, default: float) -> float:
    value = default
    for when, v in changes:
        if when <= t + EPSILON:
            value = v
    return value


def _next_change(changes: list[tuple[float, float]], t: float) -> float | None:
    later = [when for when, _ in changes if when > t + EPSILON]
    return min(later) if later else None


def evaluate(plan: Plan, now: float) -> Snapshot:
    """The job's state at `now` (or its final state, if it finished before)."""
    # Work in time since the start: wall-clock epochs are too large for byte-sized steps.
    snap = _evaluate(_relative(plan), now - plan.start)
    snap.time += plan.start
    return snap


def _relative(plan: Plan) -> Plan:
    def shift(when: float | None) -> float | None:
        return None if when is None else when - plan.start

    return Plan(
        start=0.0,
        memory=plan.memory,
        dirty_bps=plan.dirty_bps,
        link_bps=plan.link_bps,
        live=plan.live,
        offline=plan.offline,
        bandwidth=[(when - plan.start, v) for when, v in plan.bandwidth],
        downtime=[(when - plan.start, v) for when, v in plan.downtime],
        postcopy_bps=plan.postcopy_bps,
        auto_converge=plan.auto_converge,
        postcopy_at=shift(plan.postcopy_at),
        suspended_at=shift(plan.suspended_at),
        aborted_at=shift(plan.aborted_at),
        fail_at=plan.fail_at,
        fail_side=plan.fail_side,
    )


def _evaluate(plan: Plan, now: float) -> Snapshot:
    total = plan.memory
    if plan.offline:
        return Snapshot("completed", plan.start, 0, 0, 0, 0.0, 0.0, 0)
    t = plan.start
    iteration = 1
    pass_left = float(total)
    dirtied = 0.0
    processed = 0.0
    mode: Literal["precopy", "stopcopy", "postcopy"] = "precopy"
    throttle = 0.0
    downtime_ms: int | None = None
    fail_bytes = None if plan.fail_at is None else plan.fail_at * total

    def bandwidth(at: float) -> float:
        if mode == "postcopy" and plan.postcopy_bps:
            return min(plan.postcopy_bps, plan.link_bps)
        wanted = _at(plan.bandwidth, at, 0.0)
        return min(wanted, plan.link_bps) if wanted > 0 else plan.link_bps

    def dirty_rate(at: float) -> float:
        guest_runs_on_source = plan.live and mode == "precopy"
        if not guest_runs_on_source or (plan.suspended_at is not None and plan.suspended_at <= at + EPSILON):
            return 0.0
        return plan.dirty_bps * (1.0 - throttle)

    def snapshot(outcome: Outcome, side: Side | None = None) -> Snapshot:
        return Snapshot(
            outcome=outcome,
            time=t,
            total=total,
            processed=int(processed),
            remaining=0 if outcome == "completed" else int(min(float(total), pass_left + dirtied)),
            bps=bandwidth(t),
            dirty_bps=dirty_rate(t),
            iteration=iteration,
            postcopy=mode == "postcopy",
            downtime_ms=downtime_ms,
            failed_side=side,
            throttle=throttle,
        )

    for _ in range(MAX_STEPS):
        rate = bandwidth(t)
        dirt = dirty_rate(t)
        candidates = [t + pass_left / rate, now]
        for when in (
            _next_change(plan.bandwidth, t),
            plan.postcopy_at if mode == "precopy" else None,
            plan.suspended_at,
            plan.aborted_at if mode != "postcopy" else None,
        ):
            if when is not None and when > t + EPSILON:
                candidates.append(when)
        if fail_bytes is not None and processed < fail_bytes:
            candidates.append(t + (fail_bytes - processed) / rate)
        t_next = max(t, min(candidates))
        step = t_next - t
        processed += rate * step
        pass_left = max(0.0, pass_left - rate * step)
        dirtied = min(float(total), dirtied + dirt * step)
        t = t_next

        if fail_bytes is not None and processed >= fail_bytes - 1:
            return snapshot("failed", plan.fail_side or "destination")
        if plan.aborted_at is not None and plan.aborted_at <= t + EPSILON and mode != "postcopy":
            return snapshot("cancelled")
        if plan.postcopy_at is not None and plan.postcopy_at <= t + EPSILON and mode == "precopy":
            mode = "postcopy"
            pass_left += dirtied
            dirtied = 0.0
            downtime_ms = round(POSTCOPY_SWITCH_S * 1000)
            continue
        if pass_left <= 1.0 or pass_left / rate < EPSILON:
            if mode in ("postcopy", "stopcopy"):
                return snapshot("completed")
            limit = _at(plan.downtime, t, DEFAULT_DOWNTIME_S)
            iteration += 1
            pass_left, dirtied = dirtied, 0.0
            if pass_left <= rate * limit:
                mode = "stopcopy"
                downtime_ms = max(1, round(pass_left / rate * 1000))
            elif plan.auto_converge is not None:
                initial, increment = plan.auto_converge
                throttle = min(0.99, initial + increment * max(0, iteration - 2))
            continue
        if t >= now - EPSILON:
            return snapshot("postcopy" if mode == "postcopy" else "active")
    raise RuntimeError("test driver model did not settle; the plan is degenerate")
