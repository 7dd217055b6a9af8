"""Which convergence schedule a migration follows, and when its next step is due.

The spec's schedule wins; else the MigrationPolicy's; else, when a policy selects the migration,
a default built from what that policy explicitly allows (as oVirt's convergence schedules): raise
the downtime to the policy's `maxDowntimeMs`, then post-copy if allowed, else pause the guest if
workload disruption is allowed, else abort. Without a policy there is no schedule: the timeouts
decide, as before. The monitor (controller/engine/monitor.py) takes the steps this says are due.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.api.convergence import ConvergenceStep, StepAction, StepCondition
from controller.api.enums import MigrationFlag
from controller.api.status import Outlook
from controller.backends.protocol import Capabilities, JobInfo
from controller.engine.checks import step_problem
from controller.engine.run_policy import RunPolicy

# The default schedule's patience: seconds of "not converging" before each step, and before abort.
DEFAULT_PATIENCE_S = 3
DEFAULT_ABORT_AFTER_S = 30


@dataclass(frozen=True)
class Schedule:
    steps: tuple[ConvergenceStep, ...]
    origin: str  # "spec", "policy NAME", "default (policy NAME)"
    # The default schedule passes over a raise the forecast says cannot help; a user's is followed as written.
    skip_futile: bool = False

    @property
    def wants_postcopy(self) -> bool:
        return any(step.do.post_copy for step in self.steps)


def _step(do: dict[str, int | bool], **when: int) -> ConvergenceStep:
    return ConvergenceStep(when=StepCondition.model_validate(when), do=StepAction.model_validate(do))


def default_steps(policy: RunPolicy, caps: Capabilities, offline: bool) -> list[ConvergenceStep]:
    given = policy.migration_policy
    if given is None or not caps.progress or offline:
        return []
    steps = []
    if given.max_downtime_ms is not None and "downtime" in caps.live_tuning:
        steps.append(_step({"raiseDowntime": given.max_downtime_ms}, notConvergingFor=DEFAULT_PATIENCE_S))
    if given.allow_post_copy is True and caps.postcopy:
        steps.append(_step({"postCopy": True}, notConvergingFor=DEFAULT_PATIENCE_S))
    elif given.allow_workload_disruption is True and caps.suspend:
        steps.append(_step({"pause": True}, notConvergingFor=DEFAULT_PATIENCE_S))
    elif caps.abort:
        steps.append(_step({"abort": True}, notConvergingFor=DEFAULT_ABORT_AFTER_S))
    return steps


def schedule_for(
    spec_steps: list[ConvergenceStep] | None, policy: RunPolicy, caps: Capabilities, driver: str, offline: bool
) -> Schedule | None:
    if spec_steps is not None:
        return Schedule(tuple(spec_steps), "spec") if spec_steps else None
    given = policy.migration_policy
    if given is not None and given.convergence is not None:
        # A policy's schedule is written for every driver it selects: what this one cannot take is left out.
        steps = tuple(s for s in given.convergence if step_problem(s, driver, caps) is None)
        return Schedule(steps, f"policy {policy.policy_name}") if steps else None
    steps = tuple(default_steps(policy, caps, offline))
    return Schedule(steps, f"default (policy {policy.policy_name})", skip_futile=True) if steps else None


@dataclass
class Clocks:
    """What a step's conditions read, kept by the monitor between polls."""

    step_started: float  # when the step before was acted on (or the monitor began)
    not_converging_since: float | None = None
    best_remaining: int | None = None
    best_at: float = 0.0

    def observe(self, outlook: Outlook, job: JobInfo, now: float) -> None:
        if outlook is Outlook.NotConverging:
            if self.not_converging_since is None:
                self.not_converging_since = now
        elif outlook is Outlook.Converging:
            self.not_converging_since = None
        if job.data_remaining is not None and (self.best_remaining is None or job.data_remaining < self.best_remaining):
            self.best_remaining, self.best_at = job.data_remaining, now


def due(step: ConvergenceStep, clocks: Clocks, job: JobInfo, elapsed_s: float, now: float) -> bool:
    """Every condition the step names holds now; each clock counts from the step before."""
    when = step.when
    if when.not_converging_for is not None:
        since = clocks.not_converging_since
        if since is None or now - max(since, clocks.step_started) < when.not_converging_for:
            return False
    if when.stalled_for is not None and now - max(clocks.best_at, clocks.step_started) < when.stalled_for:
        return False
    if when.iteration is not None and (job.iteration or 0) < when.iteration:
        return False
    return not (when.elapsed is not None and elapsed_s < when.elapsed)


def trigger_of(step: ConvergenceStep) -> str:
    return ", ".join(f"{name} {value}" for name, value in step.when.given().items())


def flags_for(schedule: Schedule | None, caps: Capabilities) -> set[MigrationFlag]:
    """A schedule that may switch to post-copy needs the migration started with post-copy enabled."""
    return {MigrationFlag.postCopy} if schedule is not None and schedule.wants_postcopy and caps.postcopy else set()
