"""The phase machine: Validating -> Preparing -> Migrating -> Verifying -> Succeeded.

Each phase's facts are one record in controller/api/phases.py and its work one function in
controller/engine/work.py; this drives them.
Handed a status saved at any point (after a crash, a restart, a re-apply), it continues from
the phase recorded there and never repeats a side effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.api.enums import Phase, Reason
from controller.api.resource import DomainMigration
from controller.api.status import DomainMigrationStatus
from controller.backends.registry import DriverTable
from controller.engine import work
from controller.engine.controls import Controls
from controller.engine.host_directory import HostDirectory
from controller.engine.recovery import recover
from controller.engine.run import Outcome, Run, Sink
from controller.engine.run_policy import RunPolicy


async def _no_sink(status: DomainMigrationStatus, transition: object) -> None:
    return None


def _describe(run: Run, phase: Phase) -> str:
    """The phase's one line from its record, filled in with this migration's names."""
    hostname = run.status.target.hostname if run.status.target else None
    spec = run.spec
    names = {
        "source": spec.source,
        "destination": spec.destination,
        "domain": spec.domain,
        "source_name": run.source_name,
        "target_name": run.target_name,
        "hostname": hostname,
    }
    return phase.record.description.format(**names) if phase.record.work else ""


async def _begin(run: Run) -> None:
    await run.enter(Phase.Validating, message=_describe(run, Phase.Validating))


class Engine:
    def __init__(self, drivers: DriverTable, hosts: HostDirectory, policy: RunPolicy | None = None) -> None:
        self.drivers = drivers
        self.hosts = hosts
        self.policy = policy or RunPolicy()

    async def run(
        self, migration: DomainMigration, sink: Sink | None = None, controls: Controls | None = None
    ) -> DomainMigrationStatus:
        """Drive one migration to a terminal phase; a finished one is returned untouched."""
        if migration.status.phase.terminal:
            return migration.status
        controls = controls or Controls()
        if migration.spec.abort:
            controls.request_abort()
        if migration.spec.force_complete:
            controls.request_force_complete()
        run = Run(
            migration, sink or _no_sink, controls, self._policy_for(migration), drivers=self.drivers, hosts=self.hosts
        )
        try:
            await self._drive(run)
        except Outcome as outcome:
            await self._finish(run, outcome)
        finally:
            for conn in run.open_connections():
                await conn.close()
        return run.status

    async def begin(self, migration: DomainMigration, sink: Sink) -> None:
        """Admitted: Pending -> Validating, saved and told by `sink`. `run` goes on from there, in
        this process or another (the operator's waiting room begins; a daemon runs the rest)."""
        await _begin(Run(migration, sink, Controls(), self._policy_for(migration)))

    def _policy_for(self, migration: DomainMigration) -> RunPolicy:
        """Engine defaults, then the MigrationPolicy saved in status, then the spec's own timeouts."""
        applied = migration.status.applied_policy
        policy = None
        if applied:
            # Here, not at the top: most runs have no policy, and its model need not be built for them.
            from controller.api.migration_policy import MigrationPolicySpec

            policy = MigrationPolicySpec.parse(applied)
        return self.policy.with_migration_policy(policy, migration.status.policy).with_timeouts(migration.spec.timeouts)

    async def _drive(self, run: Run) -> None:
        if run.status.phase is Phase.Pending:
            await _begin(run)
        elif run.status.phase.record.checked:
            await work.validate(run)  # re-derives hosts and capabilities (Validating's own work does)
        while True:
            record = run.status.phase.record
            if run.controls.aborting and record.abort == "at-once":
                raise Outcome(Phase.Aborted, Reason.Aborted, "aborted before the migration started; nothing moved")
            if record.connects:
                await work.connect(run, self.drivers)
            step: Callable[[Run], Awaitable[Phase]] = getattr(work, str(record.work))
            after = await step(run)
            await run.enter(after, message=_describe(run, after))

    async def _finish(self, run: Run, outcome: Outcome) -> None:
        message = outcome.message
        if outcome.phase is not Phase.Succeeded and run.status.migration_start_time is not None:
            message = f"{message}; {await recover(run)}"
        elif outcome.phase is not Phase.Succeeded and run.status.phase is Phase.Preparing:
            message = f"{message}; nothing moved"
        if run.spec.dry_run and outcome.phase is Phase.Failed:
            message = f"dry run: would fail: {message}"
        if run.status.progress is not None and outcome.phase is Phase.Succeeded:
            run.status.progress.percent = 100.0
            run.status.progress.data_remaining_bytes = 0
        await run.enter(outcome.phase, outcome.reason, message)
