"""Job statistics to status.progress: the hypervisor's figures, converted once, here."""

from controller.api.status import Progress, percent_done
from controller.backends.protocol import JobInfo, JobPhase


def progress_of(job: JobInfo, fallback_elapsed_s: float) -> Progress:
    completed = job.phase is JobPhase.completed
    remaining = job.data_remaining
    eta = None
    if remaining is not None and job.bytes_per_second:
        eta = round(remaining / job.bytes_per_second, 1)
    elapsed_ms = job.elapsed_ms if job.elapsed_ms is not None else int(fallback_elapsed_s * 1000)
    return Progress(
        mode="PostCopy" if job.postcopy else "PreCopy",
        data_total_bytes=job.data_total,
        data_processed_bytes=job.data_processed,
        data_remaining_bytes=0 if completed and remaining is not None else remaining,
        percent=percent_done(job.data_total, remaining, completed and job.data_total is not None),
        bytes_per_second=job.bytes_per_second,
        dirty_rate_bytes_per_second=job.dirty_rate,
        iteration=job.iteration,
        eta_seconds=0.0 if completed and eta is not None else eta,
        elapsed_ms=elapsed_ms,
    )
