"""Who may start now: one active migration per domain, host limits, a cluster-wide limit, FIFO,
and for a migration without a destination, which host takes it.

Only the operator replica that holds the peering lease acts, so the bookkeeping is in memory;
after a restart the index of DomainMigration resources tells which ones already run. Choosing a
destination and reserving its memory happen in one step, here, so two migrations never count
the same free memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from controller.api.hypervisor_host import HostLimits
from controller.api.status import HostFit, Placement
from controller.engine.placement import Load, Room, choose

# How long an arrival is remembered: longer than any reading of free memory is trusted.
ARRIVALS_KEPT = 600.0


@dataclass(frozen=True)
class Ticket:
    key: str  # namespace/name
    source: str
    destination: str  # "" until admission chooses one among `choices`
    domain: str
    created: str  # creationTimestamp: first come, first served
    memory_bytes: int = 0  # the guest's: what it takes at the destination
    choices: tuple[str, ...] = ()  # without a destination: the hosts worth asking, by name
    ruled_out: tuple[HostFit, ...] = ()  # and those that are not, with why

    @property
    def order(self) -> tuple[str, int, str]:
        """First come, first served; of those that came in the same second (an evacuation's), the
        largest guest first, which packs hosts as first-fit-decreasing does."""
        return (self.created, -self.memory_bytes, self.key)

    @property
    def flexible(self) -> bool:
        return not self.destination


Need = tuple[str, ...]


def needs(ticket: Ticket, destination: str | None = None) -> list[Need]:
    found: list[Need] = [("out", ticket.source), ("cluster",)]
    if destination or ticket.destination:
        found.append(("in", destination or ticket.destination))
    return found


@dataclass(frozen=True)
class Arrival:
    host: str
    memory_bytes: int
    at: float


@dataclass
class Admission:
    max_parallel: int
    limits: Callable[[str], HostLimits]
    running: Callable[[], Iterable[Ticket]] = lambda: ()  # from the resource index: already past admission
    admitted: dict[str, Ticket] = field(default_factory=dict)
    waiting: dict[str, tuple[Ticket, asyncio.Event]] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)  # the last reading of each host's free memory
    arrivals: list[Arrival] = field(default_factory=list)  # migrations ended since: not in any reading
    placements: dict[str, Placement] = field(default_factory=dict)  # the last weighing of each flexible ticket
    clock: Callable[[], float] = time.monotonic

    def holders(self) -> dict[str, Ticket]:
        return {**{t.key: t for t in self.running()}, **self.admitted}

    def busy(self, ticket: Ticket) -> Ticket | None:
        """Another migration of the same domain that runs, or waits and came first."""
        for other in [*self.holders().values(), *(t for t, _ in self.waiting.values())]:
            if other.key == ticket.key or (other.source, other.domain) != (ticket.source, ticket.domain):
                continue
            if other.key in self.holders() or other.order < ticket.order:
                return other
        return None

    def _usage(self) -> dict[Need, int]:
        used: dict[Need, int] = {}
        for ticket in self.holders().values():
            for need in needs(ticket):
                used[need] = used.get(need, 0) + 1
        return used

    def _capacity(self, need: Need) -> int | None:
        if need[0] == "cluster":
            return self.max_parallel
        limits = self.limits(need[1])
        return limits.max_outbound if need[0] == "out" else limits.max_inbound

    def _full(self, need: Need, used: dict[Need, int]) -> bool:
        cap = self._capacity(need)
        return cap is not None and used.get(need, 0) >= cap

    def read_room(self, host: str, room: Room) -> None:
        """A fresh reading of a host's free memory (a probe, or a migration weighing its choices)."""
        before = self.rooms.get(host)
        if before is None or before.read_at <= room.read_at:
            self.rooms[host] = room

    def incoming(self, host: str, holders: Iterable[Ticket]) -> int:
        """What the host's last reading does not show yet: migrations to it that run, and those ended since."""
        room = self.rooms.get(host)
        since = room.read_at if room is not None else float("-inf")
        running = sum(t.memory_bytes for t in holders if t.destination == host)
        return running + sum(a.memory_bytes for a in self.arrivals if a.host == host and a.at >= since)

    def _load(self, host: str, used: dict[Need, int], holders: list[Ticket]) -> Load:
        in_flight = sum(1 for t in holders if host in (t.source, t.destination))
        full = self._full(("in", host), used)
        return Load(host, self.rooms.get(host), self.incoming(host, holders), in_flight, full)

    def weigh(self, ticket: Ticket, used: dict[Need, int] | None = None) -> Placement:
        """Where a flexible ticket would go now, and why not elsewhere."""
        used = self._usage() if used is None else used
        holders = list(self.holders().values())
        loads = [self._load(host, used, holders) for host in ticket.choices]
        return choose(ticket.memory_bytes, loads, ticket.ruled_out)

    def why_waiting(self, ticket: Ticket) -> str:
        used = self._usage()
        for need in needs(ticket):
            cap = self._capacity(need)
            if cap is not None and used.get(need, 0) >= cap:
                what = {"out": "outbound from", "in": "inbound to", "cluster": "in the cluster"}[need[0]]
                where = f" {need[1]}" if len(need) > 1 else ""
                setting = {"out": "maxOutbound", "in": "maxInbound", "cluster": "the cluster-wide limit"}[need[0]]
                return f"{used.get(need, 0)} migrations {what}{where} already run ({setting} is {cap})"
        if ticket.flexible:
            return self.placements.get(ticket.key, self.weigh(ticket)).message
        return "earlier migrations wait for the same hosts (first come, first served)"

    def position(self, ticket: Ticket) -> int | None:
        """Its place in the queue, from 1, first come first served; None once it is not waiting."""
        if ticket.key not in self.waiting:
            return None
        ahead = [t for t, _ in self.waiting.values() if t.order < ticket.order]
        return len(ahead) + 1

    def schedule(self) -> None:
        """Admit waiting tickets in order; a ticket blocked on a host also holds back later ones for it.
        A flexible ticket that no host takes holds back nobody: the next may fit where it does not."""
        used = self._usage()
        blocked: set[Need] = set()
        for ticket, admitted in sorted(self.waiting.values(), key=lambda pair: pair[0].order):
            wanted = needs(ticket)
            full = {n for n in wanted if self._full(n, used)}
            if full or blocked & set(wanted):
                blocked |= set(wanted) if not full else full
                continue
            if ticket.flexible:
                placement = self.weigh(ticket, used)
                self.placements[ticket.key] = placement
                if placement.destination is None:
                    continue
                ticket = replace(ticket, destination=placement.destination)
                wanted = needs(ticket)
            for n in wanted:
                used[n] = used.get(n, 0) + 1
            del self.waiting[ticket.key]
            self.admitted[ticket.key] = ticket
            admitted.set()

    async def acquire(self, ticket: Ticket) -> asyncio.Event:
        """Queue the ticket; the returned event is set once it may start."""
        event = asyncio.Event()
        if ticket.key in self.holders():
            event.set()
            return event
        self.waiting[ticket.key] = (ticket, event)
        self.schedule()
        return event

    def update(self, ticket: Ticket) -> None:
        """A waiting ticket's hosts weighed again (hosts changed): it keeps its place in the queue."""
        if ticket.key in self.waiting:
            self.waiting[ticket.key] = (ticket, self.waiting[ticket.key][1])

    def hold(self, ticket: Ticket) -> None:
        """A migration already past admission (resumed after a restart) keeps its slot."""
        self.admitted[ticket.key] = ticket

    def release(self, key: str) -> None:
        ticket = self.admitted.pop(key, None)
        self.waiting.pop(key, None)
        self.placements.pop(key, None)
        now = self.clock()
        self.arrivals = [a for a in self.arrivals if now - a.at < ARRIVALS_KEPT]
        if ticket is not None and ticket.destination and ticket.memory_bytes:
            self.arrivals.append(Arrival(ticket.destination, ticket.memory_bytes, now))
        self.schedule()
