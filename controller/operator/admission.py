"""Who may start now: one active migration per domain, host limits, a cluster-wide limit, FIFO.

Only the operator replica that holds the peering lease acts, so the bookkeeping is in memory;
after a restart the index of DomainMigration resources tells which ones already run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.api.hypervisor_host import HostLimits


@dataclass(frozen=True)
class Ticket:
    key: str  # namespace/name
    source: str
    destination: str
    domain: str
    created: str  # creationTimestamp: first come, first served

    @property
    def order(self) -> tuple[str, str]:
        return (self.created, self.key)


Need = tuple[str, ...]


def needs(ticket: Ticket) -> list[Need]:
    return [("out", ticket.source), ("in", ticket.destination), ("cluster",)]


@dataclass
class Admission:
    max_parallel: int
    limits: Callable[[str], HostLimits]
    running: Callable[[], Iterable[Ticket]] = lambda: ()  # from the resource index: already past admission
    admitted: dict[str, Ticket] = field(default_factory=dict)
    waiting: dict[str, tuple[Ticket, asyncio.Event]] = field(default_factory=dict)

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

    def why_waiting(self, ticket: Ticket) -> str:
        used = self._usage()
        for need in needs(ticket):
            cap = self._capacity(need)
            if cap is not None and used.get(need, 0) >= cap:
                what = {"out": "outbound from", "in": "inbound to", "cluster": "in the cluster"}[need[0]]
                where = f" {need[1]}" if len(need) > 1 else ""
                setting = {"out": "maxOutbound", "in": "maxInbound", "cluster": "the cluster-wide limit"}[need[0]]
                return f"{used.get(need, 0)} migrations {what}{where} already run ({setting} is {cap})"
        return "earlier migrations wait for the same hosts (first come, first served)"

    def position(self, ticket: Ticket) -> int | None:
        """Its place in the queue, from 1, first come first served; None once it is not waiting."""
        if ticket.key not in self.waiting:
            return None
        ahead = [t for t, _ in self.waiting.values() if t.order < ticket.order]
        return len(ahead) + 1

    def schedule(self) -> None:
        """Admit waiting tickets in order; a ticket blocked on a host also holds back later ones for it."""
        used = self._usage()
        blocked: set[Need] = set()
        for ticket, admitted in sorted(self.waiting.values(), key=lambda pair: pair[0].order):
            wanted = needs(ticket)
            full = {n for n in wanted if (cap := self._capacity(n)) is not None and used.get(n, 0) >= cap}
            if full or blocked & set(wanted):
                blocked |= set(wanted) if not full else full
                continue
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

    def hold(self, ticket: Ticket) -> None:
        """A migration already past admission (resumed after a restart) keeps its slot."""
        self.admitted[ticket.key] = ticket

    def release(self, key: str) -> None:
        self.admitted.pop(key, None)
        self.waiting.pop(key, None)
        self.schedule()
