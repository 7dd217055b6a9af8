"""Choosing a destination from a hosts file, as the operator chooses one from HypervisorHost
resources: the engine's weighing and admission over the file's documents, asked live."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.api.conditions import set_condition
from controller.api.enums import Phase, Reason
from controller.api.hypervisor_host import HypervisorHost
from controller.api.resource import DomainMigration
from controller.api.status import ConditionType, DomainMigrationStatus, PhaseTransition, Placement, timestamp
from controller.backends.protocol import BackendError, Connection
from controller.backends.registry import DriverTable
from controller.cli.documents import HostsFile
from controller.engine.admission import Admission, Ticket
from controller.engine.weighing import GuestInfo, Weigher, read_guest


@dataclass
class Placer:
    """One admission over a hosts file: every migration it places counts against the others."""

    hosts: HostsFile
    drivers: DriverTable
    max_parallel: int = 1
    # Seconds a reading of a host's free memory is trusted. 0: read again at every weighing, so a
    # guest that arrived is counted once, by the host, not also as still on its way.
    fresh_for: float = 0.0
    # When readings and arrivals happen; see Admission.clock (a dry run stops it: nothing moves).
    clock: Callable[[], float] = time.monotonic
    admission: Admission = field(init=False)

    def __post_init__(self) -> None:
        self.admission = Admission(self.max_parallel, self.hosts.limits, clock=self.clock)

    async def connect(self, host: HypervisorHost) -> Connection:
        config = self.hosts.find(host.name)
        if config is None:
            raise BackendError(f"no host named {host.name!r} in {self.hosts.path}")
        return await self.drivers.get(config.driver).connect(config)

    async def guest(self, source: str, domain: str) -> GuestInfo | None:
        """The guest's memory and CPU on the source; None when the source does not define it."""
        host = self.hosts.documents.get(source)
        if host is None:
            return None
        conn = await self.connect(host)
        try:
            return await read_guest(conn, domain)
        finally:
            await conn.close()

    def weigher(self, migration: DomainMigration, guest: GuestInfo) -> Weigher:
        spec = migration.spec
        return Weigher(
            lambda: list(self.hosts.documents.values()),
            self.connect,
            self.admission,
            spec.source,
            guest,
            selector=dict(spec.destination_selector or {}),
            fresh_for=self.fresh_for,
        )


def ticket_for(migration: DomainMigration, created: str = "", memory_bytes: int = 0) -> Ticket:
    spec = migration.spec
    key = migration.metadata.name or f"{spec.source}/{spec.domain}"
    return Ticket(key, spec.source, spec.destination or "", spec.domain, created, memory_bytes)


def scheduled(migration: DomainMigration, placement: Placement) -> None:
    """The destination chosen: the run takes it as if the spec had named it (as the operator does)."""
    assert placement.destination is not None
    migration.spec.destination = placement.destination
    migration.spec.destination_selector = None  # it chose the destination: the run has no more use for it
    status = migration.status
    status.destination, status.placement = placement.destination, placement
    set_condition(
        status.conditions,
        ConditionType.Scheduled,
        True,
        "Scheduled",
        placement.message,
        timestamp(),
        migration.metadata.generation,
    )


def unplaced(migration: DomainMigration, reason: Reason, message: str, placement: Placement | None = None) -> None:
    """Ended before the engine ran: no destination (or no guest), and nothing moved."""
    status: DomainMigrationStatus = migration.status
    status.placement = placement
    if placement is not None:
        set_condition(
            status.conditions,
            ConditionType.Scheduled,
            False,
            reason.value,
            placement.message,
            timestamp(),
            migration.metadata.generation,
        )
    status.phase, status.reason, status.message = Phase.Failed, reason, f"{message}; nothing moved"
    status.phase_transition_timestamps.append(PhaseTransition(phase=Phase.Failed, time=timestamp()))


async def place(placer: Placer, migration: DomainMigration) -> bool:
    """Choose the destination of one migration that names none, now: standalone does not wait.
    True: chosen (the migration now names it); False: the migration ended Failed, saying why."""
    spec = migration.spec
    try:
        guest = await placer.guest(spec.source, spec.domain)
    except BackendError as exc:
        unplaced(migration, Reason.HostUnreachable, f"cannot read {spec.domain} on {spec.source}: {exc}")
        return False
    if guest is None:
        unplaced(migration, Reason.DomainNotFound, f"{spec.domain} is not defined on {spec.source}")
        return False
    admission = placer.admission
    ticket = await placer.weigher(migration, guest).weigh(ticket_for(migration, memory_bytes=guest.memory_bytes))
    admitted = await admission.acquire(ticket)
    placement = admission.placements.get(ticket.key)
    if not admitted.is_set():
        why = placement.message if placement is not None else admission.why_waiting(ticket)
        admission.release(ticket.key)
        unplaced(migration, Reason.Unschedulable, why, placement)
        return False
    chosen = admission.admitted[ticket.key].destination
    scheduled(migration, placement or Placement(destination=chosen, message=chosen))
    return True
