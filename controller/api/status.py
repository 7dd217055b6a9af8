"""DomainMigration.status: where the migration is, where the domain is, and why."""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from controller.api.base import Model, empty_list
from controller.api.enums import Phase, Reason


def timestamp(when: datetime | None = None) -> str:
    """RFC 3339 in UTC with whole seconds, as Kubernetes writes its own timestamps."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DomainState(StrEnum):
    running = "running"
    paused = "paused"
    shutoff = "shutoff"
    crashed = "crashed"
    absent = "absent"


class Endpoint(Model):
    host: str
    domain: str | None = None
    uuid: str | None = None
    hostname: str | None = None  # the migration address actually used
    state: DomainState | None = None
    memory_bytes: int | None = None  # the guest's memory, as the source's driver tells it


class Outlook(StrEnum):
    """The convergence forecast (controller/engine/forecast.py)."""

    Converging = "Converging"
    NotConverging = "NotConverging"
    Unknown = "Unknown"


class Progress(Model):
    """The hypervisor's own figures, converted once; None where it reports nothing."""

    mode: Literal["PreCopy", "PostCopy"] = "PreCopy"
    data_total_bytes: int | None = None
    data_processed_bytes: int | None = None
    data_remaining_bytes: int | None = None
    percent: float | None = None
    bytes_per_second: int | None = None
    dirty_rate_bytes_per_second: int | None = None
    iteration: int | None = None
    forecast: Outlook | None = None
    eta_seconds: float | None = None  # only when Converging: never a made-up number
    expected_downtime_ms: int | None = None  # the pause at switch-over, when Converging in pre-copy
    elapsed_ms: int | None = None


class PreflightCheck(Model):
    """One check made before anything moves, and what it found."""

    name: str  # Supported, PolicyAllows, HostsReachable, Domain, NameFree, MemoryFits, CpuCompatible
    result: Literal["Passed", "Failed", "Unknown"]
    reason: Reason | None = None  # why it failed, as the migration's reason would be
    message: str = ""


class ConvergenceRecord(Model):
    """One step of the convergence schedule, when it was acted on, and the figures that triggered it."""

    step: int  # its place in the schedule, from 0
    action: str  # "raiseDowntime 500", "postCopy", ...
    outcome: Literal["Taken", "Skipped", "Failed"]
    time: str
    trigger: str  # the conditions that held: "notConvergingFor 3"
    message: str = ""
    forecast: Outlook | None = None
    data_remaining_bytes: int | None = None
    bytes_per_second: int | None = None
    dirty_rate_bytes_per_second: int | None = None
    iteration: int | None = None
    elapsed_ms: int | None = None


class HostFit(Model):
    """One host, as the operator weighed it for a migration without spec.destination."""

    host: str
    fits: bool
    reason: str = ""  # why not ("not enough memory"), or what it has ("3.0 GiB free after ...")


class Placement(Model):
    """The operator's choice of a destination, and why; absent when spec.destination names one."""

    destination: str | None = None  # None: no host fits (yet)
    message: str = ""  # "0/5 hosts fit: 2 not enough memory, 1 in maintenance, 2 other driver"
    hosts: list[HostFit] = Field(default_factory=empty_list)


class PhaseTransition(Model):
    phase: Phase
    time: str


class ConditionType(StrEnum):
    """Every condition domig writes: its own, and kstatus's three."""

    Validated = "Validated"
    Migrating = "Migrating"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Aborted = "Aborted"
    SpecChangeRefused = "SpecChangeRefused"
    Scheduled = "Scheduled"  # the operator chose the destination (spec.destination omitted)
    Ready = "Ready"  # kstatus; also a HypervisorHost's
    Reconciling = "Reconciling"
    Stalled = "Stalled"


class Condition(Model):
    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class DomainMigrationStatus(Model):
    phase: Phase = Phase.Pending
    phase_transition_timestamps: list[PhaseTransition] = Field(default_factory=empty_list)
    conditions: list[Condition] = Field(default_factory=empty_list)
    observed_generation: int | None = None
    # Where it goes: spec.destination, or the host the operator chose.
    destination: str | None = None
    placement: Placement | None = None
    source: Endpoint | None = None
    target: Endpoint | None = None
    progress: Progress | None = None
    # Set once the migrate call has been issued: the marker that forbids issuing it again.
    migration_start_time: str | None = None
    downtime_ms: int | None = None
    total_time_ms: int | None = None
    reason: Reason | None = None
    message: str | None = None
    # The spec the operator started with: what it resumes from, whatever the spec says later.
    accepted_spec: dict[str, Any] | None = None
    # The MigrationPolicy that applied, by name, and what it said when the migration was admitted.
    policy: str | None = None
    applied_policy: dict[str, Any] | None = None
    # While it waits for a slot: its place in the queue (1 is next) and the limit it waits for.
    queue_position: int | None = None
    # Every pre-flight check made so far, in order (a dry run stops after them).
    preflight: list[PreflightCheck] = Field(default_factory=empty_list)
    # Where the convergence schedule came from ("spec", "policy NAME", "default") and each step acted on.
    schedule: str | None = None
    convergence: list[ConvergenceRecord] = Field(default_factory=empty_list)
    # What the drivers cannot do for this migration, said when it is admitted (xend: no abort, ...).
    limitations: list[str] = Field(default_factory=empty_list)

    @property
    def done(self) -> bool:
        return self.phase.terminal


def percent_done(total: int | None, remaining: int | None, completed: bool) -> float | None:
    """virsh migrate --verbose: 100 - remaining*100/total, held below 100 until the job is done."""
    if completed:
        return 100.0
    if not total or remaining is None:
        return None
    value = 100.0 - remaining * 100.0 / total
    return round(min(max(value, 0.0), 99.99), 2)
