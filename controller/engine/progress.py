"""Job statistics to status.progress: the hypervisor's figures, converted once, here."""

from controller.api.status import Outlook, Progress, percent_done
from controller.backends.protocol import JobInfo, JobPhase
from controller.engine.forecast import UNKNOWN, Forecast


def progress_of(job: JobInfo, fallback_elapsed_s: float, outlook: Forecast = UNKNOWN) -> Progress:
    completed = job.phase is JobPhase.completed
    remaining = job.data_remaining
    elapsed_ms = job.elapsed_ms if job.elapsed_ms is not None else int(fallback_elapsed_s * 1000)
    if completed:
        outlook = Forecast(Outlook.Converging, eta_seconds=0.0 if remaining is not None else None)
    return Progress(
        mode="PostCopy" if job.postcopy else "PreCopy",
        data_total_bytes=job.data_total,
        data_processed_bytes=job.data_processed,
        data_remaining_bytes=0 if completed and remaining is not None else remaining,
        percent=percent_done(job.data_total, remaining, completed and job.data_total is not None),
        bytes_per_second=job.bytes_per_second,
        dirty_rate_bytes_per_second=job.dirty_rate,
        iteration=job.iteration,
        forecast=outlook.outlook if remaining is not None else None,
        eta_seconds=outlook.eta_seconds,
        expected_downtime_ms=outlook.downtime_ms,
        elapsed_ms=elapsed_ms,
    )
