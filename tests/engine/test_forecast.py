"""The forecast from a job's figures: Converging with an ETA, NotConverging with none, or Unknown."""

from controller.api.status import Outlook
from controller.backends.protocol import JobInfo, JobPhase
from controller.engine.forecast import forecast

MIB = 1024 * 1024


def job(remaining_mib: float, bps_mib: float, dirty_mib: float | None, total_mib: int = 1024) -> JobInfo:
    return JobInfo(
        JobPhase.active,
        data_total=total_mib * MIB,
        data_remaining=int(remaining_mib * MIB),
        bytes_per_second=int(bps_mib * MIB),
        dirty_rate=None if dirty_mib is None else int(dirty_mib * MIB),
    )


def test_a_shrinking_guest_converges_with_the_sum_of_its_passes() -> None:
    # 1000 MiB at 100 MiB/s dirtying 10: passes of 10 s, 1 s, then 10 MiB fits in 300 ms.
    f = forecast(job(1000, 100, 10), 300)
    assert f.outlook is Outlook.Converging
    assert f.eta_seconds == 11.1 and f.downtime_ms == 100


def test_dirtying_faster_than_it_sends_never_converges_and_has_no_eta() -> None:
    f = forecast(job(1000, 100, 900), 300)
    assert f.outlook is Outlook.NotConverging and f.eta_seconds is None and f.downtime_ms is None
    assert f.downtime_now_ms == 10_000  # what a pause now would cost


def test_a_pass_must_shrink_by_a_tenth() -> None:
    assert forecast(job(1000, 100, 95), 300).outlook is Outlook.NotConverging
    assert forecast(job(1000, 100, 85), 300).outlook is Outlook.Converging


def test_measured_passes_that_do_not_shrink_overrule_a_low_dirty_rate() -> None:
    assert forecast(job(64, 10, 5), 300, measured_ratio=0.99).outlook is Outlook.NotConverging
    assert forecast(job(64, 10, 5), 300, measured_ratio=0.5).outlook is Outlook.Converging


def test_already_fitting_in_the_downtime_converges_whatever_the_rates() -> None:
    assert forecast(job(20, 100, 900), 300).outlook is Outlook.Converging


def test_without_a_dirty_rate_or_a_transfer_rate_it_is_unknown() -> None:
    assert forecast(job(1000, 100, None), 300).outlook is Outlook.Unknown
    assert forecast(job(1000, 0, 10), 300).outlook is Outlook.Unknown


def test_in_post_copy_the_rest_goes_at_the_transfer_rate() -> None:
    j = JobInfo(JobPhase.postcopy, data_total=MIB * 1024, data_remaining=500 * MIB, bytes_per_second=100 * MIB,
                dirty_rate=900 * MIB, postcopy=True)  # fmt: skip
    f = forecast(j, 300)
    assert f.outlook is Outlook.Converging and f.eta_seconds == 5.0
