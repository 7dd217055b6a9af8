"""The test driver's migration model: pre-copy passes, switch-over, post-copy, as QEMU does them.

A job is a plan (its start time, the guest, the link, and every change made to it since) and
its state at any instant is computed from that plan, not advanced by a task: so a job keeps
"running" while no process watches it, as a real hypervisor's does.

Pre-copy: the first pass sends all memory; each later pass sends what the guest dirtied during
the one before, and a page dirtied before its turn in a pass is sent in it and again in the next
(QEMU clears the dirty log of a whole 1 GiB chunk when it sends the chunk's first page). Passes
go at the `bandwidth` cap. At the end of a pass (a dirty-bitmap sync), if what the guest dirtied
would go in less than the downtime limit at that rate, the guest pauses and the rest is sent
(stop-and-copy) at the link's full speed, QEMU lifting the cap for the switch-over. A guest that
dirties as fast as the cap sends never gets there.

Auto-converge is QEMU's `migration_trigger_throttle`: at a sync that ends a period of more than
a second, if the guest dirtied more than half of what was sent in the period, a counter rises;
at two it resets and the vCPU throttle starts at `auto_converge.initial` or rises by
`auto_converge.increment`, at most 99 %. The guest then dirties at (1 - throttle) of its rate.

Post-copy: the switch's last sync merges the pages left in the pass with those dirtied since
(a page in both is sent once, the dirt taken as spread evenly over memory), so what is left is
at most the guest's memory; the guest then runs on the destination, dirties nothing that must be
resent, and the rest goes at `bandwidth.postcopy` or, as QEMU's default, at the link's speed.
A guest touching a page that has not arrived waits for it: it touches memory evenly at its dirty
rate D, so at full speed it would want w = D * remaining / memory missing bytes a second; each
waits for its transfer at the post-copy rate B (the link's latency is not modelled), so the guest
runs B / (B + w) of the time. The stalled time and the pages so requested (B * stalled / page)
are reported; the requests are sent once, ahead of the rest, so the migration takes
remaining / B all the same.

Downtime is the time the guest ran nowhere: the stop-and-copy, the post-copy switch (device state
only), or, for a guest paused during pre-copy (suspend, the engine's force-complete) or by a
non-live migration, from the pause until completion. QEMU's own figure counts only from its
own stop; this is what the guest saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from controller.api.spec import Side

MiB = 1024 * 1024
PAGE = 4096
DEFAULT_DOWNTIME_S = 0.3  # QEMU's downtime-limit default
POSTCOPY_SWITCH_S = 0.01  # device state only
THROTTLE_TRIGGER = 0.5  # QEMU's throttle-trigger-threshold default
THROTTLE_MAX = 0.99  # QEMU's max-cpu-throttle default
THROTTLE_PERIOD_S = 1.0  # QEMU judges the dirty rate only over periods longer than this
EPSILON = 1e-6
MAX_STEPS = 200_000

Outcome = Literal["active", "postcopy", "completed", "failed", "cancelled"]
Mode = Literal["precopy", "stopcopy", "postcopy"]


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
    downtime_ms: int | None = None  # so far, while the job runs
    failed_side: Side | None = None
    throttle: float = 0.0
    paused: bool = False  # the guest runs nowhere now
    postcopy_requests: int = 0  # pages the destination asked for (libvirt's memory_postcopy_requests)
    stalled_ms: int = 0  # guest time spent waiting for them


@dataclass
class AutoConverge:
    """QEMU's migration_trigger_throttle and mig_throttle_guest_down, run at each bitmap sync."""

    initial: float
    increment: float
    throttle: float = 0.0
    high: int = 0  # dirty_rate_high_cnt
    since: float = 0.0  # when the period began
    sent_before: float = 0.0  # bytes sent when it began
    dirtied: float = 0.0  # bytes dirtied in it

    def sync(self, t: float, dirtied: float, sent: float) -> None:
        self.dirtied += dirtied
        if t - self.since <= THROTTLE_PERIOD_S:
            return  # shorter passes add up into one period, as in migration_bitmap_sync
        if self.dirtied > THROTTLE_TRIGGER * (sent - self.sent_before):
            self.high += 1
            if self.high >= 2:
                self.high = 0
                raised = self.throttle + self.increment if self.throttle > 0 else self.initial
                self.throttle = min(THROTTLE_MAX, raised)
        self.since, self.sent_before, self.dirtied = t, sent, 0.0


def fault_stall(before: float, after: float, rate: float, touch_bps: float, memory: int) -> float:
    """Seconds a post-copy guest waits for missing pages while what is left falls from `before`
    to `after` at `rate`: the integral of w / (rate + w) with w = touch_bps * left / memory."""
    if touch_bps <= 0 or before <= after:
        return 0.0
    k = touch_bps / memory
    if k * before <= 1e-12 * rate:  # touching so little that the wait is below a float's precision
        return 0.0
    # log1p keeps the difference exact when the guest touches little
    waited = (before - after) - rate / k * math.log1p(k * (before - after) / (rate + k * after))
    return max(0.0, waited / rate)


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
    dirtied = 0.0  # since the last sync
    processed = 0.0
    mode: Mode = "precopy"
    converge = AutoConverge(*plan.auto_converge, since=t) if plan.auto_converge else None
    paused_from: float | None = None if plan.live else t  # a non-live migration stops the guest first
    stalled = requested = 0.0
    fail_bytes = None if plan.fail_at is None else plan.fail_at * total

    def bandwidth(at: float) -> float:
        if mode == "postcopy":  # max-postcopy-bandwidth; QEMU's default, 0, is no limit
            return min(plan.postcopy_bps, plan.link_bps) if plan.postcopy_bps else plan.link_bps
        if mode == "stopcopy":
            return plan.link_bps
        wanted = _at(plan.bandwidth, at, 0.0)
        return min(wanted, plan.link_bps) if wanted > 0 else plan.link_bps

    def throttle() -> float:
        return converge.throttle if converge else 0.0

    def dirty_rate() -> float:
        if mode != "precopy" or paused_from is not None:
            return 0.0
        return plan.dirty_bps * (1.0 - throttle())

    def downtime_ms(at: float) -> int | None:
        if paused_from is not None:
            return max(1, round((at - paused_from) * 1000))
        return round(POSTCOPY_SWITCH_S * 1000) if mode == "postcopy" else None

    def snapshot(outcome: Outcome, side: Side | None = None) -> Snapshot:
        # A finished job's rate is its average, as QEMU's completed mbps is.
        done = outcome == "completed" and t > plan.start
        return Snapshot(
            outcome=outcome,
            time=t,
            total=total,
            processed=int(processed),
            remaining=0 if outcome == "completed" else int(min(float(total), pass_left + dirtied)),
            bps=processed / (t - plan.start) if done else bandwidth(t),
            dirty_bps=dirty_rate(),
            iteration=iteration,
            postcopy=mode == "postcopy",
            downtime_ms=downtime_ms(t),
            failed_side=side,
            throttle=throttle(),
            paused=paused_from is not None and outcome in ("active", "postcopy"),
            postcopy_requests=int(requested / PAGE),
            stalled_ms=round(stalled * 1000),
        )

    for _ in range(MAX_STEPS):
        # What happens at t, then a step to the next instant anything can happen.
        if fail_bytes is not None and processed >= fail_bytes - 1:
            return snapshot("failed", plan.fail_side or "destination")
        if plan.aborted_at is not None and plan.aborted_at <= t + EPSILON and mode != "postcopy":
            return snapshot("cancelled")
        if plan.suspended_at is not None and plan.suspended_at <= t + EPSILON and mode == "precopy":
            paused_from = plan.suspended_at if paused_from is None else paused_from
        if plan.postcopy_at is not None and plan.postcopy_at <= t + EPSILON and mode == "precopy":
            mode = "postcopy"
            pass_left += dirtied * (1.0 - pass_left / total)
            dirtied = 0.0
        rate = bandwidth(t)
        if pass_left <= 1.0 or pass_left / rate < EPSILON:
            if mode in ("postcopy", "stopcopy"):
                return snapshot("completed")
            iteration += 1
            if converge:
                converge.sync(t, dirtied, processed)
            pass_left, dirtied = dirtied, 0.0
            # QEMU's threshold is the pre-copy rate it measured times the downtime limit.
            if pass_left <= rate * _at(plan.downtime, t, DEFAULT_DOWNTIME_S):
                mode = "stopcopy"
                paused_from = t if paused_from is None else paused_from
            continue
        if t >= now - EPSILON:
            return snapshot("postcopy" if mode == "postcopy" else "active")

        candidates = [t + pass_left / rate, now]
        for when in (
            _next_change(plan.bandwidth, t),
            plan.postcopy_at if mode == "precopy" else None,
            plan.suspended_at if mode == "precopy" else None,
            plan.aborted_at if mode != "postcopy" else None,
        ):
            if when is not None and when > t + EPSILON:
                candidates.append(when)
        if fail_bytes is not None and processed < fail_bytes:
            candidates.append(t + (fail_bytes - processed) / rate)
        t_next = max(t, min(candidates))
        sent = min(pass_left, rate * (t_next - t))
        if mode == "postcopy":
            touch = plan.dirty_bps if paused_from is None else 0.0  # a paused guest touches nothing
            waited = fault_stall(pass_left, pass_left - sent, rate, touch, total)
            stalled += waited
            requested += rate * waited
        processed += sent
        pass_left -= sent
        dirtied = min(float(total), dirtied + dirty_rate() * (t_next - t))
        t = t_next
    raise RuntimeError("test driver model did not settle; the plan is degenerate")
