"""The one protocol every hypervisor backend speaks, and the data it speaks in.

As in the 2007 proposal, a driver declares what it can do as data (its Capabilities); the
engine, not the driver, turns a missing capability into NoSupport before anything moves.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.api.enums import MigrationFlag, Reason
from controller.api.spec import Side
from controller.api.status import DomainState


class BackendError(Exception):
    """A hypervisor said no. `reason` is set when the failure has a typed meaning."""

    def __init__(self, message: str, reason: Reason | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Capabilities:
    flags: frozenset[MigrationFlag]
    params: frozenset[str]
    rename: bool = False
    localhost: bool = False
    progress: bool = False  # reports job statistics while migrating
    abort: bool = False
    postcopy: bool = False
    suspend: bool = False  # can pause the source to force convergence
    job_history: bool = False  # a finished job stays visible, so "no job" means "never started"
    live_tuning: frozenset[str] = frozenset()
    capacity: bool = False  # capacity() reports the host's memory, CPUs and running domains
    cpu_compare: bool = False  # guest_cpu() and cpu_fits() tell whether a guest's CPU runs on a host


class Credentials:
    """A Secret's data; kept out of every repr so it cannot leak into logs or status."""

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def get(self, key: str) -> str | None:
        return self._data.get(key)

    def __repr__(self) -> str:
        return f"Credentials(keys={sorted(self._data)})"

    __str__ = __repr__


@dataclass(frozen=True)
class HostConfig:
    """What the engine needs to reach one host; built from a HypervisorHost document."""

    name: str
    driver: str
    uri: str
    migration_address: str | None = None
    credentials: Credentials | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # driver-specific, e.g. test domains


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: DomainState
    memory_bytes: int
    persistent: bool = True
    guest: bool = True  # False for the host's own domain (xend's Domain-0): never one to migrate

    @property
    def running(self) -> bool:
        return self.state is DomainState.running

    @property
    def active(self) -> bool:
        """Running or paused: it holds memory on the host, and a live migration can move it."""
        return self.guest and self.state in (DomainState.running, DomainState.paused)


class JobPhase(StrEnum):
    none = "none"
    active = "active"
    postcopy = "postcopy"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobPhase.completed, JobPhase.failed, JobPhase.cancelled)


@dataclass(frozen=True)
class JobInfo:
    """A migration job as the source hypervisor reports it (libvirt's job stats)."""

    phase: JobPhase
    data_total: int | None = None
    data_processed: int | None = None
    data_remaining: int | None = None
    bytes_per_second: int | None = None
    dirty_rate: int | None = None  # bytes per second
    iteration: int | None = None
    downtime_ms: int | None = None
    elapsed_ms: int | None = None
    error: str | None = None
    failed_side: Side | None = None
    postcopy: bool = False  # the guest already runs on the destination


NO_JOB = JobInfo(JobPhase.none)


@dataclass(frozen=True)
class HostCapacity:
    """What a host has, as its hypervisor says; None where the driver cannot tell."""

    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None  # what a new guest could have now
    cpus: int | None = None
    cpu_model: str | None = None
    running_domains: int | None = None  # guests running or paused, not the host's own (xend's Domain-0)


UNKNOWN_CAPACITY = HostCapacity()


@dataclass(frozen=True)
class MigrationRequest:
    domain: str
    hostname: str
    dname: str | None = None
    flags: frozenset[MigrationFlag] = frozenset()
    params: Mapping[str, int | str] = field(default_factory=dict)

    @property
    def target_name(self) -> str:
        return self.dname or self.domain


class Connection(ABC):
    """An open connection to one host. Methods a driver lacks are absent from its Capabilities."""

    host: HostConfig

    @abstractmethod
    async def hostname(self) -> str: ...

    @abstractmethod
    async def version(self) -> str: ...

    @abstractmethod
    async def list_domains(self) -> list[DomainInfo]: ...

    @abstractmethod
    async def lookup(self, name_or_uuid: str) -> DomainInfo | None: ...

    @abstractmethod
    async def migrate(self, destination: Connection, request: MigrationRequest) -> str | None:
        """Start migrating; return once the job runs (or has already finished). What it returns, if
        anything, is a warning for the status: how the migration runs differs from what the host
        asked, at a risk it names (libvirt: managed, because peer-to-peer could not be used)."""

    @abstractmethod
    async def job(self, domain: str) -> JobInfo:
        """The outbound migration job of `domain` on this host: running, or the last finished."""

    async def news(self, domain: str, seconds: float) -> None:
        """The monitor's pause between two looks at the job: return early when the driver hears of a
        change (libvirt's job events, the migrate call returning), else after `seconds`."""
        await asyncio.sleep(seconds)

    async def abort(self, domain: str) -> None:
        raise BackendError("abort is not supported", Reason.NoSupport)

    async def start_postcopy(self, domain: str) -> None:
        raise BackendError("post-copy is not supported", Reason.NoSupport)

    async def suspend(self, domain: str) -> None:
        raise BackendError("suspend is not supported", Reason.NoSupport)

    async def tune(self, domain: str, name: str, value: int) -> None:
        raise BackendError(f"changing {name} during migration is not supported", Reason.NoSupport)

    async def capacity(self) -> HostCapacity:
        return UNKNOWN_CAPACITY

    async def guest_cpu(self, domain: str) -> str | None:
        """On the source: the domain's CPU definition, in the driver's own words, for cpu_fits()
        on a destination of the same driver; None when the driver cannot tell."""
        return None

    async def cpu_fits(self, guest_cpu: str) -> tuple[bool, str] | None:
        """On the destination: whether this host can run a guest with that CPU, and what the
        hypervisor said (why not, when not); None when the driver cannot tell."""
        return None

    @abstractmethod
    async def resume(self, domain: str) -> None: ...

    @abstractmethod
    async def undefine(self, domain: str) -> None: ...

    async def close(self) -> None:
        return None


class Driver(ABC):
    """One row of the driver table."""

    name: str
    capabilities: Capabilities

    @abstractmethod
    async def connect(self, host: HostConfig) -> Connection: ...

    async def close(self) -> None:
        return None
