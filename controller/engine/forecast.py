"""Will it finish, and when? A pre-copy forecast from the hypervisor's own figures.

Pre-copy sends what is left of a pass at the transfer rate; meanwhile the guest dirties memory
at its dirty rate, and that is the next pass (never more than the guest's memory). QEMU switches
over when what is left fits in the allowed downtime. So from the remaining bytes r, the
transfer rate b and the dirty rate d, pass after pass: r' = min(memory, d * r / b). When each
pass is at least a tenth smaller than the one before (Nova's rule for progress), the forecast
says Converging, with the time to the switch-over and the pause it will cost; when it is not,
NotConverging, and no ETA: a made-up number is worse than none. The passes actually measured
count too: a guest that rewrites one region over and over shows a dirty rate no higher than the
transfer rate (QEMU counts each page once per pass), but passes that do not shrink.
Without both rates (the first pass on QEMU, which measures the dirty rate at its first sync; a
driver without statistics) it says Unknown.

The forecast is for the migration as it runs now: a raised downtime, a throttle or a new
bandwidth changes the figures it is computed from at the next poll.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.api.status import Outlook
from controller.backends.protocol import JobInfo

DEFAULT_DOWNTIME_MS = 300  # QEMU's downtime-limit when nobody sets one
MAX_PASSES = 1000
MIN_SHRINK = 0.1  # a pass must be this much smaller than the one before to count as progress


@dataclass(frozen=True)
class Forecast:
    outlook: Outlook
    eta_seconds: float | None = None  # to the end of the migration; only when Converging
    downtime_ms: int | None = None  # the pause at switch-over; only when Converging in pre-copy
    # What a switch-over right now would cost: everything left, at the transfer rate.
    downtime_now_ms: int | None = None


UNKNOWN = Forecast(Outlook.Unknown)


def forecast(
    job: JobInfo, downtime_limit_ms: int, paused: bool = False, measured_ratio: float | None = None
) -> Forecast:
    """`measured_ratio`: the size of the last pass over the one before it, when two were seen."""
    remaining, rate = job.data_remaining, job.bytes_per_second
    if remaining is None or not rate:
        return UNKNOWN
    now_ms = round(remaining / rate * 1000)
    if job.postcopy or paused:
        # The guest dirties nothing that must be sent again: the rest goes at the transfer rate.
        return Forecast(Outlook.Converging, eta_seconds=round(remaining / rate, 1), downtime_now_ms=now_ms)
    if job.dirty_rate is None:
        return Forecast(Outlook.Unknown, downtime_now_ms=now_ms)
    memory = job.data_total or remaining
    limit = downtime_limit_ms / 1000
    shrinking = measured_ratio is None or measured_ratio <= 1 - MIN_SHRINK
    left, elapsed = float(remaining), 0.0
    for _ in range(MAX_PASSES):
        if left <= rate * limit:
            final = left / rate
            return Forecast(
                Outlook.Converging,
                eta_seconds=round(elapsed + final, 1),
                downtime_ms=max(1, round(final * 1000)),
                downtime_now_ms=now_ms,
            )
        if not shrinking:
            break
        pass_time = left / rate
        following = min(float(memory), job.dirty_rate * pass_time)
        if following > left * (1 - MIN_SHRINK):
            break
        left, elapsed = following, elapsed + pass_time
    return Forecast(Outlook.NotConverging, downtime_now_ms=now_ms)
