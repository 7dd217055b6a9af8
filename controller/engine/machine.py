"""The phase machine: Validating -> Preparing -> Migrating -> Verifying -> Succeeded.

The transition table is here, in one place; each phase's work is one function in phases.py.
Handed a status saved at any point (after a crash, a restart, a re-apply), it continues from
the phase recorded there and never repeats a side effect.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from controller.api.enums import Phase, Reason
from controller.api.policy import MigrationPolicySpec
from controller.api.resource import DomainMigration
from controller.api.status import DomainMigrationStatus
from controller.backends.registry import DriverTable
from controller.engine import phases
from controller.engine.controls import Controls
from controller.engine.hosts import HostDirectory
from controller.engine.policy import Policy
from controller.engine.recovery import recover
from controller.engine.run import Outcome, Run, Sink

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.Pending: frozenset({Phase.Validating, Phase.Aborted}),
    Phase.Validating: frozenset({Phase.Preparing, Phase.Failed, Phase.Aborted}),
    Phase.Preparing: frozenset({Phase.Migrating, Phase.Succeeded, Phase.Failed, Phase.Aborted}),
    Phase.Migrating: frozenset({Phase.Verifying, Phase.Failed, Phase.Aborted}),
    Phase.Verifying: frozenset({Phase.Succeeded, Phase.Failed}),
}


async def _no_sink(status: DomainMigrationStatus, transition: object) -> None:
    return None


def _describe(run: Run, phase: Phase) -> str:
    spec = run.spec
    if phase is Phase.Validating:
        return f"checking what {spec.source}'s driver supports"
    if phase is Phase.Preparing:
        return f"looking up {spec.domain} on {spec.source} and {run.target_name} on {spec.destination}"
    if phase is Phase.Migrating:
        hostname = run.status.target.hostname if run.status.target else None
        return f"migrating {run.source_name} to {spec.destination} via {hostname}"
    if phase is Phase.Verifying:
        return f"looking up {run.target_name} on {spec.destination}"
    return ""


class Engine:
    def __init__(self, drivers: DriverTable, hosts: HostDirectory, policy: Policy | None = None) -> None:
        self.drivers = drivers
        self.hosts = hosts
        self.policy = policy or Policy()

    async def run(
        self, migration: DomainMigration, sink: Sink | None = None, controls: Controls | None = None
    ) -> DomainMigrationStatus:
        """Drive one migration to a terminal phase; a finished one is returned untouched."""
        if migration.status.phase.terminal:
            return migration.status
        controls = controls or Controls()
        if migration.spec.abort:
            controls.request_abort()
        run = Run(migration, sink or _no_sink, controls, self._policy_for(migration), drivers=self.drivers)
        try:
            await self._drive(run)
        except Outcome as outcome:
            await self._finish(run, outcome)
        finally:
            for conn in (run.source, run.dest):
                if conn is not None:
                    await conn.close()
        return run.status

    def _policy_for(self, migration: DomainMigration) -> Policy:
        """Engine defaults, then the MigrationPolicy saved in status, then the spec's own timeouts."""
        applied = migration.status.applied_policy
        policy = MigrationPolicySpec.parse(applied) if applied else None
        return self.policy.with_migration_policy(policy).with_timeouts(migration.spec.timeouts)

    async def _drive(self, run: Run) -> None:
        steps: dict[Phase, Callable[[Run], Awaitable[Phase]]] = {
            Phase.Validating: lambda r: phases.validate(r, self.hosts, self.drivers),
            Phase.Preparing: phases.prepare,
            Phase.Migrating: phases.migrate,
            Phase.Verifying: phases.verify,
        }
        if run.status.phase is Phase.Pending:
            await self._enter(run, Phase.Validating)
        else:
            await phases.validate(run, self.hosts, self.drivers)  # re-derives hosts and capabilities
        while True:
            phase = run.status.phase
            if run.controls.aborting and phase in (Phase.Validating, Phase.Preparing):
                raise Outcome(Phase.Aborted, Reason.Aborted, "aborted before the migration started; nothing moved")
            if phase is not Phase.Validating:
                await phases.connect(run, self.drivers)
            await self._enter(run, await steps[phase](run))

    async def _enter(self, run: Run, phase: Phase) -> None:
        allowed = TRANSITIONS.get(run.status.phase, frozenset())
        assert phase in allowed, f"no transition {run.status.phase} -> {phase}"
        await run.enter(phase, message=_describe(run, phase))

    async def _finish(self, run: Run, outcome: Outcome) -> None:
        message = outcome.message
        if outcome.phase is not Phase.Succeeded and run.status.migration_start_time is not None:
            message = f"{message}; {await recover(run)}"
        elif outcome.phase is not Phase.Succeeded and run.status.phase is Phase.Preparing:
            message = f"{message}; nothing moved"
        if run.status.progress is not None and outcome.phase is Phase.Succeeded:
            run.status.progress.percent = 100.0
            run.status.progress.data_remaining_bytes = 0
        await run.enter(outcome.phase, outcome.reason, message)
