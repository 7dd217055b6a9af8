"""Admission at scale: what one acquire or release costs does not grow with what waits.

Counted, not timed: how often admission asks for a host's limits (in the operator, a look-up of the
HypervisorHost) while thousands of tickets wait, and that the queue's order, places and the
one-migration-per-domain rule stay what they were."""

from __future__ import annotations

import random

from controller.api.hypervisor_host import HostLimits
from controller.engine.admission import ARRIVALS_KEPT, Admission, Ticket
from controller.engine.placement import Room

WAITING = 5_000
LIMIT = 200


class CountedLimits:
    def __init__(self, limits: dict[str, HostLimits] | None = None) -> None:
        self.calls = 0
        self.limits = limits or {}

    def __call__(self, host: str) -> HostLimits:
        self.calls += 1
        return self.limits.get(host, HostLimits())


def ticket(i: int, second: int, hosts: int = 50) -> Ticket:
    created = f"2026-01-01T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}Z"
    source = f"host-{i % hosts:02d}"
    return Ticket(f"default/m-{i:05d}", source, f"host-{(i + 1) % hosts:02d}", f"vm-{i:05d}", created, 1 << 20)


async def test_a_release_with_thousands_waiting_asks_for_a_few_limits_not_for_every_waiting_ticket() -> None:
    limits = CountedLimits()
    admission = Admission(LIMIT, limits)
    tickets = [ticket(i, second=i // 100) for i in range(LIMIT + WAITING)]
    events = [await admission.acquire(t) for t in tickets]
    assert sum(e.is_set() for e in events) == LIMIT
    assert admission.queued() == WAITING
    limits.calls = 0
    for n in range(100):
        admission.release(tickets[n].key)
        # The first waiting one, in order, took the freed slot; nobody else moved.
        assert events[LIMIT + n].is_set() and not events[LIMIT + n + 1].is_set()
    assert limits.calls <= 2 * 100, limits.calls  # per release: the admitted one's two hosts, nobody else's
    assert admission.queued() == WAITING - 100


async def test_the_queue_keeps_first_come_first_served_whatever_order_tickets_arrive_in() -> None:
    admission = Admission(1, CountedLimits())
    first = ticket(0, second=0)
    await admission.acquire(first)
    later = [ticket(i, second=i) for i in range(1, 2_001)]
    shuffled = later[:]
    random.Random(12).shuffle(shuffled)
    events = {t.key: await admission.acquire(t) for t in shuffled}
    assert [admission.position(t) for t in later[:3]] == [1, 2, 3]
    assert admission.position(later[-1]) == len(later)
    admission.release(later[1].key)  # aborted while waiting: those behind move up one
    assert admission.position(later[2]) == 2 and admission.position(later[1]) is None
    admission.release(first.key)
    assert events[later[0].key].is_set() and admission.position(later[0]) is None
    assert admission.position(later[2]) == 1


async def test_same_second_tickets_go_largest_guest_first() -> None:
    admission = Admission(1, CountedLimits())
    await admission.acquire(ticket(0, second=0))
    small = Ticket("default/small", "host-a", "host-b", "vm-s", "2026-01-01T00:00:05Z", 1 << 20)
    large = Ticket("default/large", "host-a", "host-b", "vm-l", "2026-01-01T00:00:05Z", 1 << 30)
    await admission.acquire(small)
    await admission.acquire(large)
    assert (admission.position(large), admission.position(small)) == (1, 2)


async def test_a_domain_is_busy_with_its_holder_or_an_earlier_waiting_ticket_among_thousands() -> None:
    admission = Admission(1, CountedLimits())
    tickets = [ticket(i, second=i) for i in range(3_000)]
    for t in tickets:
        await admission.acquire(t)
    again = Ticket("default/again", tickets[1_500].source, "host-x", tickets[1_500].domain, "2026-01-02T00:00:00Z")
    assert admission.busy(again) == tickets[1_500]  # waits, and came first
    holder = Ticket("default/holder-again", tickets[0].source, "host-x", tickets[0].domain, "2025-01-01T00:00:00Z")
    assert admission.busy(holder) == tickets[0]  # runs: busy even for an earlier one
    assert admission.busy(tickets[2_000]) is None
    admission.release(tickets[1_500].key)
    assert admission.busy(again) is None


async def test_a_host_limit_holds_back_later_tickets_for_that_host_only() -> None:
    limits = CountedLimits({"host-00": HostLimits(max_outbound=1)})
    admission = Admission(10, limits)
    ours = [Ticket(f"default/a{i}", "host-00", "host-09", f"vm-a{i}", f"2026-01-01T00:00:0{i}Z") for i in range(3)]
    other = Ticket("default/b", "host-01", "host-09", "vm-b", "2026-01-01T00:00:09Z")
    events = [await admission.acquire(t) for t in [*ours, other]]
    assert [e.is_set() for e in events] == [True, False, False, True]
    assert admission.why_waiting(ours[1]) == "1 migrations outbound from host-00 already run (maxOutbound is 1)"
    admission.release(ours[0].key)
    assert [e.is_set() for e in events] == [True, True, False, True]


async def test_arrivals_count_until_a_newer_reading_and_are_forgotten_after_a_while() -> None:
    now = [0.0]
    admission = Admission(10, CountedLimits(), clock=lambda: now[0])
    for i in range(3):
        t = Ticket(f"default/m{i}", "host-a", "host-b", f"vm{i}", "2026-01-01T00:00:00Z", 1 << 30)
        await admission.acquire(t)
        now[0] = float(i)
        admission.release(t.key)
    assert admission.incoming("host-b", []) == 3 << 30
    admission.read_room("host-b", Room(8 << 30, 1.0))  # read after the first arrival: the last two count
    assert admission.incoming("host-b", []) == 2 << 30
    assert admission.incoming("host-a", []) == 0
    now[0] = 1.5 + ARRIVALS_KEPT
    admission.release("default/none")
    assert admission.incoming("host-b", []) == 1 << 30  # the one at t=2 is still kept
    now[0] += 1
    admission.release("default/none")
    assert admission.incoming("host-b", []) == 0
