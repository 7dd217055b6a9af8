"""Who may start now: one active migration per domain, host limits, a cluster-wide limit, FIFO,
and for a migration without a destination, which host takes it.

Only the operator replica that holds the peering lease acts, so the bookkeeping is in memory;
after a restart the index of DomainMigration resources tells which ones already run. Choosing a
destination and reserving its memory happen in one step, here, so two migrations never count
the same free memory.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

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


class Signal(Protocol):
    """Told once its ticket is admitted: an asyncio.Event, or the operator's waiting migration."""

    def set(self) -> None: ...


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
    """The queue and the slots. Every call costs what changed, not what waits: the waiting tickets
    are kept in their order (a release looks at the first few, not all of them, and stops once the
    cluster-wide limit is full), a domain's tickets are found by (source, domain), and arrivals
    are kept per host in time order, so that 10,000 waiting migrations cost no more per release
    than 10 do (tests/engine/test_admission_scale.py counts it)."""

    max_parallel: int
    limits: Callable[[str], HostLimits]
    running: Callable[[], Iterable[Ticket]] = lambda: ()  # from the resource index: already past admission
    admitted: dict[str, Ticket] = field(default_factory=dict)
    # Read it, never write it: `acquire`, `update` and `release` keep `_queue` and `_waiting_for` with it.
    waiting: dict[str, tuple[Ticket, Signal]] = field(default_factory=dict)
    rooms: dict[str, Room] = field(default_factory=dict)  # the last reading of each host's free memory
    placements: dict[str, Placement] = field(default_factory=dict)  # the last weighing of each flexible ticket
    clock: Callable[[], float] = time.monotonic
    _queue: list[tuple[tuple[str, int, str], str]] = field(default_factory=list)  # (order, key), sorted
    _waiting_for: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (source, domain) -> keys
    # Migrations ended since, per destination, oldest first: not in any reading of its free memory.
    _arrivals: dict[str, deque[Arrival]] = field(default_factory=dict)

    def holders(self) -> dict[str, Ticket]:
        return {**{t.key: t for t in self.running()}, **self.admitted}

    def busy(self, ticket: Ticket) -> Ticket | None:
        """Another migration of the same domain that runs, or waits and came first."""
        holders = self.holders()
        mine = (ticket.source, ticket.domain)
        # The holders are as many as the limits let run; the waiting ones are found by their domain.
        others = [t for t in holders.values() if (t.source, t.domain) == mine]
        others += [self.waiting[k][0] for k in self._waiting_for.get(mine, ())]
        for other in others:
            if other.key == ticket.key:
                continue
            if other.key in holders or other.order < ticket.order:
                return other
        return None

    def _usage(self, holders: Iterable[Ticket] | None = None) -> dict[Need, int]:
        used: dict[Need, int] = {}
        for ticket in self.holders().values() if holders is None else holders:
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
        arrived = 0
        for arrival in reversed(self._arrivals.get(host, ())):
            if arrival.at < since:
                break  # oldest first: the rest are older still
            arrived += arrival.memory_bytes
        return running + arrived

    def _load(self, host: str, used: dict[Need, int], holders: list[Ticket]) -> Load:
        in_flight = sum(1 for t in holders if host in (t.source, t.destination))
        full = self._full(("in", host), used)
        return Load(host, self.rooms.get(host), self.incoming(host, holders), in_flight, full)

    def weigh(self, ticket: Ticket, used: dict[Need, int] | None = None) -> Placement:
        """Where a flexible ticket would go now, and why not elsewhere."""
        holders = list(self.holders().values())
        used = self._usage(holders) if used is None else used
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
                # At least `cap` run: the holders counted from the index may include, for a moment,
                # one that has just ended, and a count that wobbles would rewrite every waiting status.
                return f"{cap} migrations {what}{where} already run ({setting} is {cap})"
        if ticket.flexible:
            return self.placements.get(ticket.key, self.weigh(ticket)).message
        return "earlier migrations wait for the same hosts (first come, first served)"

    def position(self, ticket: Ticket) -> int | None:
        """Its place in the queue, from 1, first come first served; None once it is not waiting."""
        if ticket.key not in self.waiting:
            return None
        return bisect.bisect_left(self._queue, (self.waiting[ticket.key][0].order, ticket.key)) + 1

    def queued(self) -> int:
        return len(self._queue)

    def schedule(self) -> None:
        """Admit waiting tickets in order; a ticket blocked on a host also holds back later ones for it.
        A flexible ticket that no host takes holds back nobody: the next may fit where it does not.

        Every ticket needs a cluster slot: once they are all taken nothing more can start, so the
        walk stops there, having looked at no more tickets than it admitted and skipped."""
        if len(self.admitted) >= self.max_parallel or not self.waiting:
            return  # full (or nobody waits) without counting: what this replica admitted is held
        used = self._usage()
        blocked: set[Need] = set()
        admitted: list[str] = []
        for _, key in self._queue:
            if self._full(("cluster",), used):
                break
            ticket, event = self.waiting[key]
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
            admitted.append(key)
            self.admitted[key] = ticket
            event.set()
        for key in admitted:
            self._unqueue(key)

    def _enqueue(self, ticket: Ticket, event: Signal) -> None:
        if ticket.key in self.waiting:
            self._unqueue(ticket.key)
        self.waiting[ticket.key] = (ticket, event)
        bisect.insort(self._queue, (ticket.order, ticket.key))
        self._waiting_for.setdefault((ticket.source, ticket.domain), set()).add(ticket.key)

    def _unqueue(self, key: str) -> None:
        found = self.waiting.pop(key, None)
        if found is None:
            return
        ticket = found[0]
        at = bisect.bisect_left(self._queue, (ticket.order, key))
        if at < len(self._queue) and self._queue[at][1] == key:
            del self._queue[at]
        mine = (ticket.source, ticket.domain)
        keys = self._waiting_for.get(mine)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._waiting_for[mine]

    async def acquire(self, ticket: Ticket, event: asyncio.Event | None = None) -> asyncio.Event:
        """Queue the ticket; the returned event (`event`, if given) is set once it may start."""
        event = event or asyncio.Event()
        self.enqueue(ticket, event)
        return event

    def enqueue(self, ticket: Ticket, signal: Signal) -> bool:
        """Queue the ticket; `signal` is set once it may start. True: it may start now."""
        if ticket.key in self.admitted or ticket.key in {t.key for t in self.running()}:
            signal.set()
            return True
        self._enqueue(ticket, signal)
        self.schedule()
        return ticket.key in self.admitted

    def update(self, ticket: Ticket) -> None:
        """A waiting ticket's hosts weighed again (hosts changed): it keeps its place in the queue."""
        if ticket.key in self.waiting:
            self._enqueue(ticket, self.waiting[ticket.key][1])

    def hold(self, ticket: Ticket) -> None:
        """A migration past admission (resumed after a restart, or begun here) keeps its slot."""
        self.admitted.setdefault(ticket.key, ticket)

    def release(self, key: str) -> None:
        ticket = self.admitted.pop(key, None)
        self._unqueue(key)
        self.placements.pop(key, None)
        now = self.clock()
        for host in list(self._arrivals):
            kept = self._arrivals[host]
            while kept and now - kept[0].at >= ARRIVALS_KEPT:
                kept.popleft()
            if not kept:
                del self._arrivals[host]
        if ticket is not None and ticket.destination and ticket.memory_bytes:
            arrival = Arrival(ticket.destination, ticket.memory_bytes, now)
            self._arrivals.setdefault(ticket.destination, deque()).append(arrival)
        self.schedule()
