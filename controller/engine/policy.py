"""Engine policy: how often to look, how long to wait, what to do when time runs out."""

from dataclasses import dataclass, replace
from enum import StrEnum

from controller.api.spec import Timeouts


class OnTimeout(StrEnum):
    abort = "abort"  # give up, source keeps running
    postCopy = "postCopy"  # switch to post-copy when the migration allows it, else abort
    forceComplete = "forceComplete"  # post-copy if allowed, else pause the guest so it converges


@dataclass(frozen=True)
class Policy:
    poll_interval: float = 0.5
    # KubeVirt's defaults: 150 s per GiB of guest memory; 150 s with no progress.
    completion_per_gib: float = 150.0
    progress_timeout: float = 150.0
    on_timeout: OnTimeout = OnTimeout.postCopy
    verify_timeout: float = 60.0
    abort_timeout: float = 60.0
    minimum_completion: float = 30.0  # small guests still get time to set up

    def with_timeouts(self, timeouts: Timeouts) -> "Policy":
        return replace(
            self,
            completion_per_gib=float(timeouts.completion_per_gi_b or self.completion_per_gib),
            progress_timeout=float(timeouts.progress or self.progress_timeout),
        )

    def completion_budget(self, memory_bytes: int) -> float:
        gib = memory_bytes / 1024**3
        return max(self.minimum_completion, self.completion_per_gib * gib)
