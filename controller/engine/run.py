"""One migration's working state while the engine drives it, and how it reports."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from controller.api.conditions import refresh_conditions
from controller.api.enums import MigrationFlag, Phase, Reason
from controller.api.phases import ForbiddenTransition
from controller.api.resource import DomainMigration
from controller.api.spec import SIDES, DomainMigrationSpec, Side
from controller.api.status import DomainMigrationStatus, PhaseTransition, PreflightCheck, timestamp
from controller.backends.protocol import BackendError, Capabilities, Connection, HostConfig
from controller.backends.registry import DriverTable
from controller.engine.controls import Controls
from controller.engine.forecast import DEFAULT_DOWNTIME_MS
from controller.engine.host_directory import HostDirectory
from controller.engine.run_policy import RunPolicy
from controller.engine.schedule import Schedule


@dataclass(frozen=True)
class Transition:
    before: Phase
    after: Phase
    reason: Reason | None
    message: str


Sink = Callable[[DomainMigrationStatus, Transition | None], Awaitable[None]]
"""Told every change. A sink that saves status may skip progress-only reports, but must save at
once every transition and every report for which `must_save` is true, before it returns."""


Marker = tuple[str | None, str | None]


def marker_of(status: DomainMigrationStatus) -> Marker:
    """What must be durable before the engine acts on it: the migrate-call marker (saved before the
    call), and the reason of an abort the engine decides itself (saved before the abort call, so that
    a run resumed after a crash ends Failed with that reason, not Aborted as if the user had asked)."""
    return status.migration_start_time, status.reason.value if status.reason else None


def must_save(saved_marker: Marker | None, status: DomainMigrationStatus) -> bool:
    """The marker changed since it was last saved: save it before going on."""
    return marker_of(status) != saved_marker


class Outcome(Exception):
    """Ends the run in a terminal phase; raised from anywhere inside a phase."""

    def __init__(self, phase: Phase, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.phase = phase
        self.reason = reason
        self.message = message


def fail(reason: Reason, message: str) -> Outcome:
    return Outcome(Phase.Failed, reason, message)


def failure(exc: BackendError, what: str, otherwise: Reason = Reason.HostUnreachable) -> Outcome:
    """A backend's error as the run's failure: its own reason when it typed one, and what we asked
    (nothing when the error says it all)."""
    return fail(exc.reason or otherwise, f"{what}: {exc}" if what else exc.message)


T = TypeVar("T")


async def ask(call: Awaitable[T], what: str, otherwise: Reason = Reason.HostUnreachable) -> T:
    """Await a backend call; its error ends the run as `failure` says."""
    try:
        return await call
    except BackendError as exc:
        raise failure(exc, what, otherwise) from None


@dataclass
class Run:
    migration: DomainMigration
    sink: Sink
    controls: Controls
    policy: RunPolicy
    drivers: DriverTable | None = None  # to reconnect to a host that stopped answering
    hosts: HostDirectory | None = None
    # Each side's host and, once connect() ran, its open connection; keyed by the spec's field name.
    hosts_of: dict[Side, HostConfig] = field(default_factory=dict)
    connections: dict[Side, Connection] = field(default_factory=dict)
    capabilities: Capabilities | None = None
    memory_bytes: int = 0
    # What a MigrationPolicy adds where the driver supports it and the spec says nothing.
    extra_flags: set[MigrationFlag] = field(default_factory=set)
    extra_params: dict[str, int] = field(default_factory=dict)
    schedule: Schedule | None = None  # the convergence schedule, chosen when validated
    attached_at: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    marked: bool = False  # the marker set in this run and the migrate call not made yet

    @property
    def spec(self) -> DomainMigrationSpec:
        return self.migration.spec

    @property
    def status(self) -> DomainMigrationStatus:
        return self.migration.status

    def has(self, flag: MigrationFlag) -> bool:
        return flag in self.spec.flags or flag in self.extra_flags

    @property
    def flags(self) -> frozenset[MigrationFlag]:
        return frozenset(self.spec.flags) | self.extra_flags

    @property
    def params(self) -> dict[str, int | str]:
        return {**self.extra_params, **self.spec.params}

    @property
    def downtime_limit_ms(self) -> int:
        """The switch-over pause allowed now: the spec's or policy's, as last tuned."""
        given = self.params.get("downtime")
        return given if isinstance(given, int) else DEFAULT_DOWNTIME_MS

    @property
    def may_pause(self) -> bool:
        """Pausing the guest to make it converge is workload disruption: a policy may forbid it."""
        given = self.policy.migration_policy
        return given is None or given.allow_workload_disruption is not False

    def host(self, side: Side) -> HostConfig:
        assert side in self.hosts_of, "validate() finds both hosts before any phase that needs one"
        return self.hosts_of[side]

    def connection(self, side: Side) -> Connection:
        assert side in self.connections, f"connect() runs before any phase that needs the {side}"
        return self.connections[side]

    @property
    def source(self) -> Connection:
        return self.connection("source")

    @property
    def destination(self) -> Connection:
        return self.connection("destination")

    def open_connections(self) -> list[Connection]:
        return [self.connections[side] for side in SIDES if side in self.connections]

    @property
    def caps(self) -> Capabilities:
        assert self.capabilities is not None
        return self.capabilities

    @property
    def source_name(self) -> str:
        """The domain's name on the source, once looked up (the spec may give a UUID)."""
        if self.status.source and self.status.source.domain:
            return self.status.source.domain
        return self.spec.domain

    @property
    def target_name(self) -> str:
        return self.spec.dname or self.source_name

    async def report(self, transition: Transition | None = None) -> None:
        refresh_conditions(self.status, self.migration.metadata.generation, timestamp())
        self.status.observed_generation = self.migration.metadata.generation
        await self.sink(self.status, transition)

    async def enter(self, phase: Phase, reason: Reason | None = None, message: str = "") -> None:
        before = self.status.phase
        if before == phase:
            return
        if not before.may_go_to(phase):
            raise ForbiddenTransition(before, phase)
        self.status.phase = phase
        if reason is not None:
            self.status.reason = reason
        self.status.message = message or self.status.message
        self.status.phase_transition_timestamps.append(PhaseTransition(phase=phase, time=timestamp()))
        await self.report(Transition(before, phase, reason, message))

    def checked(self, name: str, found: Outcome | None = None, message: str = "", unknown: bool = False) -> None:
        """Record a pre-flight check's result (again after a resume: the same entry)."""
        if found is not None:
            entry = PreflightCheck(name=name, result="Failed", reason=found.reason, message=found.message)
        else:
            entry = PreflightCheck(name=name, result="Unknown" if unknown else "Passed", message=message)
        checks = self.status.preflight
        for i, old in enumerate(checks):
            if old.name == name:
                checks[i] = entry
                return
        checks.append(entry)

    def elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self.attached_at
