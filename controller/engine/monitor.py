"""Following a running migration: progress and its forecast, abort, live tuning, the convergence
schedule's steps, force-complete, and the timeouts (the last resort) with their actions."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal

from controller.api.convergence import ConvergenceStep
from controller.api.enums import MigrationFlag, Phase, Reason
from controller.api.status import ConvergenceRecord, DomainState, Outlook, timestamp
from controller.backends.protocol import BackendError, JobInfo, JobPhase
from controller.engine.contact import reconnect
from controller.engine.forecast import Forecast, forecast
from controller.engine.progress import progress_of
from controller.engine.run import Outcome, Run, fail, failure
from controller.engine.run_policy import OnTimeout
from controller.engine.schedule import Clocks, due, trigger_of


@dataclass
class Watch:
    """What the monitor remembers between polls."""

    best_remaining: int | None = None
    best_at: float = 0.0
    abort_sent: bool = False
    abort_handled: bool = False  # acted on, whether or not the hypervisor could cancel
    abort_deadline: float = 0.0
    switched: str | None = None  # "post-copy" or "suspend", once forced to complete
    force_refused: bool = False  # a force-complete that neither post-copy nor a pause may do
    failure: Outcome | None = None  # why we aborted, when it was not the user's wish
    noted: str = ""
    lost_since: float | None = None  # when the source stopped answering
    lost_because: str | None = None  # why it first did, in this migration (kept once it answers again)
    clocks: Clocks | None = None  # the convergence schedule's
    passes: dict[int, int] = field(default_factory=dict)  # pre-copy pass -> data remaining when first seen

    def pass_ratio(self, job: JobInfo) -> float | None:
        """The last pass's size over the one before it, as measured (None until two are seen)."""
        if job.iteration is None or job.data_remaining is None or job.postcopy:
            return None
        self.passes.setdefault(job.iteration, job.data_remaining)
        now, before = self.passes.get(job.iteration), self.passes.get(job.iteration - 1)
        return now / before if now is not None and before else None


def _now() -> float:
    return asyncio.get_running_loop().time()


async def monitor(run: Run) -> Phase:
    watch = Watch(best_at=_now(), clocks=Clocks(step_started=_now(), best_at=_now()))
    while True:
        job = await _read_job(run, watch)
        ratio = watch.pass_ratio(job)
        outlook = forecast(job, run.downtime_limit_ms, paused=watch.switched == "suspend", measured_ratio=ratio)
        if job.phase is not JobPhase.none or job.data_total is not None:
            run.status.progress = progress_of(job, run.elapsed(), outlook)
        if job.phase is JobPhase.completed:
            run.status.downtime_ms = job.downtime_ms
            run.status.total_time_ms = job.elapsed_ms
            return Phase.Verifying
        if job.phase is JobPhase.failed:
            raise _failed(run, job)
        if job.phase is JobPhase.cancelled:
            cancelled = Outcome(Phase.Aborted, Reason.Aborted, "aborted; the migration was cancelled")
            raise watch.failure or _our_abort(run) or cancelled
        if job.phase is JobPhase.none:
            return await _ended_without_job(run, watch)
        await _steer(run, job, watch, outlook)
        await run.report()
        await _pause(run, watch)


async def _pause(run: Run, watch: Watch) -> None:
    """Until the next look: the poll interval, cut short by news of the job from the driver (its
    end is seen when it happens, not up to one interval later) or by an abort request."""
    interval = run.policy.poll_interval
    waits: list[asyncio.Future[object]] = [asyncio.ensure_future(run.source.news(run.source_name, interval))]
    if not watch.abort_handled:
        waits.append(asyncio.ensure_future(run.controls.abort_requested.wait()))
    try:
        await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
        for waiting in waits:
            with contextlib.suppress(asyncio.CancelledError, BackendError):
                await waiting


async def _read_job(run: Run, watch: Watch) -> JobInfo:
    """The source's job; a source that stops answering is retried, since its migration goes on."""
    while True:
        try:
            job = await run.source.job(run.source_name)
        except BackendError as exc:
            if exc.reason not in (None, Reason.HostUnreachable):
                raise failure(exc, f"the source host {run.spec.source}") from None
            await _lost_contact(run, watch, exc)
            continue
        if watch.lost_since is not None:
            watch.lost_since = None
            run.status.message = f"contact with {run.spec.source} is back"
            await run.report()
        return job


async def _lost_contact(run: Run, watch: Watch, exc: BackendError) -> None:
    now, limit = _now(), run.policy.contact_timeout
    if watch.lost_since is None:
        watch.lost_since = now
        watch.lost_because = watch.lost_because or str(exc)
        run.status.message = f"lost contact with {run.spec.source} ({exc}); trying again for up to {limit:.0f} s"
        await run.report()
    elif now - watch.lost_since > limit:
        raise fail(
            Reason.HostUnreachable,
            f"no answer from {run.spec.source} for {limit:.0f} s ({exc}): the migration may still be running "
            "there, so where the domain is cannot be known until the host answers",
        )
    await asyncio.sleep(run.policy.poll_interval)
    await reconnect(run, "source")


def _failed(run: Run, job: JobInfo) -> Outcome:
    side = job.failed_side or "destination"
    reason = Reason.SourceFailed if side == "source" else Reason.TargetFailed
    return fail(reason, f"the migration failed on the {side}: {job.error or 'no reason given'}")


async def _ended_without_job(run: Run, watch: Watch) -> Phase:
    """Drivers that report no job stats (xend), or a source that lost the job: the hosts' views decide."""
    at_destination = await run.destination.lookup(run.target_name)
    if at_destination is not None and at_destination.state in (DomainState.running, DomainState.paused):
        return Phase.Verifying
    if watch.lost_because is not None:
        # Seen on libvirt: a daemon restarted mid-migration cancels its outgoing migrations when it
        # comes back, so the source answers again with no job; the destination never had the guest.
        raise fail(
            Reason.SourceFailed,
            f"{run.spec.source} stopped answering mid-migration ({watch.lost_because}) and came back with no"
            f" migration running: it was cancelled there (a restart of the host's daemon does that), and"
            f" {run.target_name} is not on {run.spec.destination}",
        )
    raise fail(Reason.TargetFailed, f"the migration ended and {run.target_name} is not on {run.spec.destination}")


async def _steer(run: Run, job: JobInfo, watch: Watch, outlook: Forecast) -> None:
    if run.controls.aborting and not watch.abort_handled:
        await _abort(run, job, watch, None)
    if watch.abort_sent:
        if _now() > watch.abort_deadline:
            raise fail(Reason.Timeout, "the hypervisor did not cancel the migration in time; it may still run")
        return
    for name, value in run.controls.take_tuning().items():
        if name in run.caps.live_tuning:
            try:
                await run.source.tune(run.source_name, name, value)
                if name == "downtime":
                    run.extra_params["downtime"] = value  # what the forecast counts with from now on
            except BackendError as exc:
                watch.noted = f"could not change {name}: {exc}"
    if run.controls.force_complete_requested.is_set() and watch.switched is None and not watch.force_refused:
        await _force(run, job, watch, "forced to complete on request")
    if watch.switched is None:
        await _follow_schedule(run, job, watch, outlook)
    if watch.switched is None:
        await _check_clocks(run, job, watch)


async def _follow_schedule(run: Run, job: JobInfo, watch: Watch, outlook: Forecast) -> None:
    """Take the schedule's next step once its conditions hold; each step once, in order."""
    clocks, schedule = watch.clocks, run.schedule
    assert clocks is not None
    now = _now()
    clocks.observe(outlook.outlook, job, now)
    done = len(run.status.convergence)  # saved in status, so a resumed monitor goes on from there
    if schedule is None or done >= len(schedule.steps) or job.postcopy:
        return
    step = schedule.steps[done]
    elapsed = job.elapsed_ms / 1000 if job.elapsed_ms is not None else run.elapsed()
    if not due(step, clocks, job, elapsed, now):
        return
    outcome, message = await _take(run, job, watch, step, outlook)
    run.status.convergence.append(
        ConvergenceRecord(
            step=done,
            action=str(step.do),
            outcome=outcome,
            time=timestamp(),
            trigger=trigger_of(step),
            message=message,
            forecast=outlook.outlook,
            data_remaining_bytes=job.data_remaining,
            bytes_per_second=job.bytes_per_second,
            dirty_rate_bytes_per_second=job.dirty_rate,
            iteration=job.iteration,
            elapsed_ms=round(elapsed * 1000),
        )
    )
    if outcome != "Skipped":
        clocks.step_started = now
    run.status.message = f"convergence step {done + 1} ({step.do}, {trigger_of(step)}): {message}"


async def _take(
    run: Run, job: JobInfo, watch: Watch, step: ConvergenceStep, outlook: Forecast
) -> tuple[Literal["Taken", "Skipped", "Failed"], str]:
    action, value = step.do.name, step.do.value
    try:
        if action == "raiseDowntime":
            assert value is not None
            if value <= run.downtime_limit_ms:
                return "Skipped", f"the downtime limit is already {run.downtime_limit_ms} ms"
            schedule = run.schedule
            if schedule is not None and schedule.skip_futile:
                then = forecast(job, value)
                if then.outlook is not Outlook.Converging:
                    now_ms = outlook.downtime_now_ms
                    return "Skipped", f"at {value} ms it still would not converge (a switch-over now takes {now_ms} ms)"
            await run.source.tune(run.source_name, "downtime", value)
            run.extra_params["downtime"] = value
            return "Taken", f"downtime limit raised to {value} ms"
        if action == "raiseBandwidth":
            assert value is not None
            await run.source.tune(run.source_name, "bandwidth", value)
            return "Taken", f"bandwidth raised to {value} MiB/s"
        if action == "postCopy":
            if not run.has(MigrationFlag.postCopy):
                return "Failed", "the migration was not started with post-copy enabled"
            await run.source.start_postcopy(run.source_name)
            watch.switched = "post-copy"
            return "Taken", "switched to post-copy: the guest runs on the destination"
        if action == "pause":
            await run.source.suspend(run.source_name)
            watch.switched = "suspend"
            return "Taken", "paused the guest so the rest can be sent"
        why = (
            f"not converging ({trigger_of(step)}); aborted by the convergence schedule, "
            f"the domain keeps running on {run.spec.source}"
        )
        await _abort(run, job, watch, fail(Reason.NotConverging, why))
        return "Taken", "aborted"
    except BackendError as exc:
        return "Failed", str(exc)


async def _check_clocks(run: Run, job: JobInfo, watch: Watch) -> None:
    policy = run.policy
    elapsed = job.elapsed_ms / 1000 if job.elapsed_ms is not None else run.elapsed()
    budget = policy.completion_budget(run.memory_bytes or job.data_total or 0)
    if elapsed > budget:
        await _out_of_time(run, job, watch, Reason.Timeout, f"not completed within {budget:.0f} s")
        return
    if not run.caps.progress or job.data_remaining is None:
        return
    now = _now()
    if watch.best_remaining is None or job.data_remaining < watch.best_remaining:
        watch.best_remaining, watch.best_at = job.data_remaining, now
    elif now - watch.best_at > policy.progress_timeout:
        await _out_of_time(
            run,
            job,
            watch,
            Reason.Stalled,
            f"no progress for {policy.progress_timeout:.0f} s (data remaining never fell below "
            f"{watch.best_remaining} bytes; the guest dirties memory as fast as it is sent)",
        )


async def _out_of_time(run: Run, job: JobInfo, watch: Watch, reason: Reason, why: str) -> None:
    action = run.policy.on_timeout
    can_postcopy = run.has(MigrationFlag.postCopy) and run.caps.postcopy and not job.postcopy
    if action in (OnTimeout.postCopy, OnTimeout.forceComplete) and can_postcopy:
        await _force(run, job, watch, f"{why}; switching to post-copy")
    elif action is OnTimeout.forceComplete and run.caps.suspend and run.may_pause:
        await _force(run, job, watch, f"{why}; pausing the guest to complete")
    else:
        await _abort(run, job, watch, fail(reason, f"{why}; aborted, the domain keeps running on {run.spec.source}"))


async def _force(run: Run, job: JobInfo, watch: Watch, why: str) -> None:
    """Post-copy when the migration may, else pause the guest so the rest fits, else say why not."""
    try:
        if run.has(MigrationFlag.postCopy) and run.caps.postcopy:
            await run.source.start_postcopy(run.source_name)
            watch.switched = "post-copy"
        elif run.caps.suspend and run.may_pause:
            await run.source.suspend(run.source_name)
            watch.switched = "suspend"
        else:
            watch.force_refused = True
            run.status.message = f"{why}: refused, {_cannot_force(run)}"
            return
    except BackendError as exc:
        watch.noted = f"could not force completion: {exc}"
        return
    run.status.message = why


# The engine's own reasons to abort a job (the user's is Aborted): while Migrating, status.reason
# holds one only from the moment the engine decided it, saved before the abort call.
OUR_ABORTS = frozenset({Reason.Stalled, Reason.Timeout, Reason.NotConverging})


def _our_abort(run: Run) -> Outcome | None:
    """A job found cancelled after a restart, which this engine had aborted before it went down."""
    if run.status.reason in OUR_ABORTS and not run.controls.aborting:
        assert run.status.reason is not None
        return fail(run.status.reason, run.status.message or "")
    return None


async def _abort(run: Run, job: JobInfo, watch: Watch, failure: Outcome | None) -> None:
    watch.abort_handled = True
    if job.postcopy:
        run.status.message = "abort requested, but the guest already runs on the destination (post-copy)"
        return
    if not run.caps.abort:
        run.status.message = f"abort requested, but the {run.spec.source} driver cannot abort a migration"
        return
    if failure is not None:
        run.status.reason, run.status.message = failure.reason, failure.message
        await run.report()  # durable before the call (must_save), as the migrate-call marker is
    try:
        await run.source.abort(run.source_name)
    except BackendError as exc:
        run.status.message = f"abort failed: {exc}"
        return
    watch.abort_sent = True
    watch.abort_deadline = _now() + run.policy.abort_timeout
    watch.failure = failure


def _cannot_force(run: Run) -> str:
    if not run.caps.postcopy and not run.caps.suspend:
        return f"the {run.host('source').driver} driver can neither switch to post-copy nor pause the guest"
    policy = f"MigrationPolicy {run.policy.policy_name}"
    no_postcopy = "post-copy was not enabled for this migration (flag postCopy, or a policy with allowPostCopy)"
    if not run.may_pause:
        return f"{no_postcopy}, and {policy} does not allow pausing the guest (allowWorkloadDisruption: false)"
    return f"{no_postcopy}, and the driver cannot pause the guest"
