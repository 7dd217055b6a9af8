"""Engine policy: how often to look, how long to wait, what to do when time runs out.

The clocks are the spec's, the MigrationPolicy's, or KubeVirt's defaults below; there is no other.
The completion budget is `completionPerGiB` times the guest's memory, counted on the hypervisor's
own job clock, with no floor: `completionPerGiB: 1` on a 1 GiB guest means one second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from controller.api.enums import MigrationFlag

if TYPE_CHECKING:
    # Types only: a run with no policy (every `domig migrate` without --policies) need not build its model.
    from controller.api.migration_policy import MigrationPolicySpec
    from controller.api.spec import Timeouts


class OnTimeout(StrEnum):
    abort = "abort"  # give up, source keeps running
    postCopy = "postCopy"  # switch to post-copy when the migration allows it, else abort
    forceComplete = "forceComplete"  # post-copy if allowed, else pause the guest so it converges


@dataclass(frozen=True)
class RunPolicy:
    poll_interval: float = 0.5
    # KubeVirt's defaults: 150 s per GiB of guest memory; 150 s with no progress.
    completion_per_gib: float = 150.0
    progress_timeout: float = 150.0
    on_timeout: OnTimeout = OnTimeout.postCopy
    verify_timeout: float = 60.0
    abort_timeout: float = 60.0
    contact_timeout: float = 120.0  # how long to keep trying a source that stops answering mid-migration
    # From a MigrationPolicy: used only where the driver supports them and the spec is silent.
    soft_flags: frozenset[MigrationFlag] = frozenset()
    default_params: Mapping[str, int] = field(default_factory=dict)
    # The MigrationPolicy these came from, by name: what it forbids, and its schedule.
    policy_name: str | None = None
    migration_policy: MigrationPolicySpec | None = None

    def with_migration_policy(self, policy: MigrationPolicySpec | None, name: str | None = None) -> RunPolicy:
        if policy is None:
            return self
        flags = set()
        if policy.allow_auto_converge:
            flags.add(MigrationFlag.autoConverge)
        if policy.allow_post_copy:
            flags.add(MigrationFlag.postCopy)
        params = {}
        if policy.bandwidth_per_migration is not None:
            params["bandwidth"] = policy.bandwidth_per_migration
        if policy.max_downtime_ms is not None:
            params["downtime"] = policy.max_downtime_ms
        return replace(
            self,
            completion_per_gib=float(policy.completion_timeout_per_gib or self.completion_per_gib),
            progress_timeout=float(policy.progress_timeout or self.progress_timeout),
            on_timeout=OnTimeout(policy.on_timeout) if policy.on_timeout else self.on_timeout,
            soft_flags=frozenset(flags),
            default_params=params,
            policy_name=name,
            migration_policy=policy,
        )

    def with_timeouts(self, timeouts: Timeouts) -> RunPolicy:
        return replace(
            self,
            completion_per_gib=float(timeouts.completion_per_gib or self.completion_per_gib),
            progress_timeout=float(timeouts.progress or self.progress_timeout),
        )

    def completion_budget(self, memory_bytes: int) -> float:
        gib = memory_bytes / 1024**3
        return self.completion_per_gib * gib
