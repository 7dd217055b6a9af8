"""Migrations waiting to start: one room for all of them, no task or kopf daemon for each.

A DomainMigration with no phase yet, or Pending, is a `Waiter` here: its spec checked, its hosts
reached, its guest read, its ticket queued in admission. It is looked at when something it waits
for happens (its slot, an edit, a host's new limits) or when its patience runs out, by a few
workers shared by all; between two looks it is a small object, not a task. (Each had a kopf
daemon before: 45 KiB a waiting migration; 19 KiB now, most of it kopf's copy of the object, which
it keeps for any resource with a daemon handler.) Admitted, it enters Validating
here, the engine's own transition; that status brings kopf's daemon for the run
(handlers.migrate spawns it for the active phases only).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque

import kopf

from controller.api.conditions import refresh_conditions, set_condition
from controller.api.enums import Phase, Reason
from controller.api.errors import SpecError
from controller.api.hypervisor_host import HypervisorHost
from controller.api.resource import DomainMigration
from controller.api.status import ConditionType, DomainMigrationStatus, Placement, timestamp
from controller.backends.protocol import BackendError
from controller.engine import Engine, RunPolicy, StaticHosts
from controller.engine.admission import Ticket
from controller.engine.placement import waits_for_slot
from controller.engine.weighing import GuestInfo, Weigher, read_guest
from controller.operator import metrics
from controller.operator.context import Context
from controller.operator.host_evacuation import RUN, run_started
from controller.operator.host_resources import HostProblem, check_host, connect, hosts_in, lookup, resolve
from controller.operator.migrations import Ended, Logger, Migration, status_of, ticket_of
from controller.operator.policy_resources import policy_for

WAITING = {None, "", Phase.Pending.value}
UNREAD = DomainMigrationStatus()  # a waiting migration's status between looks: never written to
LOOKS_AT_ONCE = 32  # waiters looked at concurrently: each look may connect to a host or two
QUEUE_PATIENCE = 12  # host_retry intervals at most between two looks of a waiting migration at its place


class Waiter(Migration):
    """One waiting DomainMigration. `look` moves it on and says when to look again."""

    def __init__(self, room: WaitingRoom, body: kopf.Body, logger: Logger) -> None:
        super().__init__(room.ctx, body, logger)
        self.room = room
        self.taken = False  # its saved status read, its spec checked
        self.ticket: Ticket | None = None  # queued in admission, once its hosts answered
        self.weigher: Weigher | None = None
        self.patience = room.ctx.config.host_retry
        self.due = 0.0  # the loop's time of the next look its patience asks for
        self.gone = False  # deleted, or its status cannot be written
        self.next_look = 0.0  # when the room looks at it again unless told before
        self.parsed: DomainMigration | None = None
        # What its last Pending write said: its status model is read again at each look, not kept
        # (10 KiB each, most of what 10,000 waiting migrations would hold).
        self.said: tuple[Reason | None, str | None, int | None] = (None, None, None)

    def set(self) -> None:
        """Admission's signal: it may start (before any other look: its slot is held meanwhile)."""
        self.room.nudge(self.key, first=True)

    async def look(self) -> float | None:
        """Seconds until the next look, or None: it ended here or began (Validating)."""
        now = asyncio.get_running_loop().time()
        if not self.taken:
            if not self.take():
                return None
            self.taken = True
            await self.refuse_busy()
        else:
            self.status = self.read_status()
            if self.body.spec.get("abort"):
                await self.end(Phase.Aborted, Reason.Aborted, "aborted while waiting to start; nothing moved")
            await self.note_edits()
        admission = self.ctx.admission
        if self.ticket is None:
            if not await self.hosts_answer():
                return self.ctx.config.host_retry
            if not await self.queue():
                return self.patience
        elif self.key not in admission.admitted:
            if now < self.due:
                return self.due - now  # an edit, not its turn: patience as before
            if self.weigher is not None:
                self.ticket = await self.weigher.weigh(self.ticket)
                admission.update(self.ticket)
            else:
                self.patience = min(2 * self.patience, QUEUE_PATIENCE * self.ctx.config.host_retry)
            admission.schedule()
            if self.key not in admission.admitted:
                await self.say_place(self.ticket)
                return self.patience
        await self.begin()
        return None

    def take(self) -> bool:
        """What the event says is saved (a waiting migration has no migrate-call marker to miss)."""
        if not self.take_saved(dict(self.body.status), self.body.spec):
            return False
        self.said = (self.status.reason, self.status.message, self.status.queue_position)
        return True

    def read_status(self) -> DomainMigrationStatus:
        """Its status as the last event says (a look seconds after its last write sees that write)."""
        status = status_of(dict(self.body.status))
        status.destination = self.accepted.get("destination") or status.destination
        return status

    async def refuse_busy(self) -> None:
        try:
            self.parsed = self.parse()  # to refuse a bad spec now; kept for this look only
        except SpecError as exc:
            await self.end(Phase.Failed, Reason.InvalidSpec, "; ".join(exc.problems))
        metrics.mark_waiting(self.namespace, self.name, self.driver)
        self.status.destination = self.accepted.get("destination") or self.status.destination
        other = self.ctx.admission.busy(self.first_ticket())
        if other is not None:
            domain, source = self.accepted.get("domain"), self.accepted.get("source")
            message = f"{domain} on {source} is already being migrated by DomainMigration {other.key}"
            await self.end(Phase.Failed, Reason.Busy, message)

    def first_ticket(self, memory_bytes: int = 0) -> Ticket:
        """Its place in line: when it was created, or, made by an evacuation, when that started, so
        that the evacuation's guests are placed largest first however long making them took."""
        run = (self.body.metadata.get("labels") or {}).get(RUN)
        started = run_started(run) if isinstance(run, str) else None
        created = started or self.body.metadata.get("creationTimestamp", "")
        return ticket_of(self.namespace, self.name, self.accepted, created, memory_bytes)

    async def hosts_answer(self) -> bool:
        try:
            for field in ("source", "destination"):
                if not self.accepted.get(field):
                    continue  # no destination: admission chooses one
                host = check_host(self.ctx.indexes.hosts, self.accepted[field], field, self.namespace)
                await self.reach(host)
            return True
        except HostProblem as problem:
            if problem.final:
                await self.end(Phase.Failed, problem.reason, problem.message)
            await self.pending(problem.reason, problem.message)
            return False

    async def reach(self, host: HypervisorHost) -> None:
        """Ask the host itself, not only its last probe: the probe may be old, or not seen yet."""
        config = await resolve(host, self.ctx.kube)
        try:
            conn = await self.ctx.drivers.get(config.driver).connect(config)
        except BackendError as exc:
            raise HostProblem(Reason.HostNotReady, f"HypervisorHost {host.name} is not reachable: {exc}") from None
        await conn.close()

    async def queue(self) -> bool:
        """The ticket, with the guest's memory (and, without a destination, its hosts weighed),
        into admission's queue; True if admitted at once."""
        guest = await self.guest()
        ticket = self.first_ticket(guest.memory_bytes)
        if ticket.flexible:
            selector = dict(self.accepted.get("destinationSelector") or {})
            ctx = self.ctx
            self.weigher = Weigher(
                lambda: hosts_in(ctx.indexes.hosts),
                lambda host: connect(host, ctx.drivers, ctx.kube),
                ctx.admission,
                ticket.source,
                guest,
                self.namespace,
                selector,
                ctx.config.host_retry / 2,
            )
            ticket = await self.weigher.weigh(ticket)
        self.ticket = ticket
        if self.ctx.admission.enqueue(ticket, self):
            return True
        # A fixed-destination ticket is woken when admitted: it looks at its place less and less
        # often (its place is written when it has halved, see `place`). A flexible one weighs its
        # hosts again every host_retry: their free memory decides where it may go.
        self.due = asyncio.get_running_loop().time() + self.patience
        await self.say_place(ticket)
        return False

    async def guest(self) -> GuestInfo:
        """The guest's memory and CPU, for admission to count and weigh; a guest the source does not
        define is the engine's to say (DomainNotFound, or already at the destination)."""
        source = lookup(self.ctx.indexes.hosts, str(self.accepted.get("source", "")))
        found = None
        if source is not None:
            try:
                conn = await connect(source, self.ctx.drivers, self.ctx.kube)
                try:
                    found = await read_guest(conn, str(self.accepted.get("domain", "")))
                finally:
                    await conn.close()
            except BackendError:
                found = None
        if found is None and not self.accepted.get("destination"):
            domain, host = self.accepted.get("domain"), self.accepted.get("source")
            await self.end(Phase.Failed, Reason.DomainNotFound, f"{domain} is not defined on {host}")
        return found or GuestInfo(0, None)

    async def say_place(self, ticket: Ticket) -> None:
        admission = self.ctx.admission
        self.due = asyncio.get_running_loop().time() + self.patience
        where = self.place(admission.position(ticket))
        place = f" (place {where} in the queue)" if where is not None else ""
        placement = admission.placements.get(ticket.key)
        if placement is not None and placement.destination is None:
            await self.unscheduled(placement, place, where)
        else:
            await self.pending(Reason.WaitingForSlot, admission.why_waiting(ticket) + place, where)

    def place(self, position: int | None) -> int | None:
        """The place to show: the last one written until the real one has halved (or grown), so a
        migration deep in a long queue writes its status a few times while it waits, not once for
        every migration that starts before it."""
        shown = self.said[2]
        if position is None or shown is None or position > shown or 2 * position <= shown:
            return position
        return shown

    async def unscheduled(self, placement: Placement, place: str, where: int | None) -> None:
        reason = Reason.WaitingForSlot if waits_for_slot(placement) else Reason.Unschedulable
        self.status.placement = placement
        set_condition(
            self.status.conditions,
            ConditionType.Scheduled,
            False,
            reason.value,
            placement.message,
            timestamp(),
            self.body.metadata.get("generation"),
        )
        await self.pending(reason, placement.message + place, where)

    async def pending(self, reason: Reason, message: str, queue_position: int | None = None) -> None:
        if self.said == (reason, message, queue_position):
            return
        self.said = (reason, message, queue_position)
        self.status.reason, self.status.message, self.status.queue_position = reason, message, queue_position
        refresh_conditions(self.status, self.body.metadata.get("generation"), timestamp())
        await self.reporter.patch(self.status)

    async def begin(self) -> None:
        """Admitted: take the destination admission chose and the policy that applies, and enter
        Validating; kopf's daemon runs the rest (and keeps the slot, which this replica holds)."""
        admitted = self.ctx.admission.admitted[self.key]
        if self.ticket is not None and self.ticket.flexible:
            self.scheduled(admitted.destination, self.ctx.admission.placements.get(self.key))
        self.status.queue_position = None
        flexible = self.ticket is not None and self.ticket.flexible
        migration = self.parsed if self.parsed is not None and not flexible else self.parse()
        labels = dict(self.body.metadata.get("labels") or {})
        indexes = self.ctx.indexes
        chosen = policy_for(indexes.policies, indexes.namespace_labels, self.namespace, labels)
        if chosen is not None:
            migration.status.policy = chosen.metadata.name
            migration.status.applied_policy = chosen.spec.dump()
        self.status.destination = self.accepted.get("destination")
        self.status.accepted_spec = self.accepted
        metrics.mark_active(self.namespace, self.name, self.driver)
        engine = Engine(self.ctx.drivers, StaticHosts([]), RunPolicy(poll_interval=self.ctx.config.poll_interval))
        # Handed over before the write: its daemon may start before the write returns here.
        self.ctx.handed[self.key] = (migration, self.reporter)
        try:
            await engine.begin(migration, self.reporter)
        except BaseException:
            self.ctx.handed.pop(self.key, None)
            raise

    def scheduled(self, destination: str, placement: Placement | None) -> None:
        """Admission chose the destination: the run takes it as if the spec had named it."""
        self.accepted["destination"] = destination
        self.status.placement = placement or Placement(destination=destination, message=destination)
        set_condition(
            self.status.conditions,
            ConditionType.Scheduled,
            True,
            "Scheduled",
            self.status.placement.message,
            timestamp(),
            self.body.metadata.get("generation"),
        )


class WaitingRoom:
    """Every waiting migration of this replica, and the loop that looks at them."""

    def __init__(self, ctx: Context, at_once: int = LOOKS_AT_ONCE) -> None:
        self.ctx = ctx
        self.waiters: dict[str, Waiter] = {}
        # Done here (begun, or ended): their watch events still show them waiting until ours arrive.
        self.left: set[str] = set()
        self._due: list[tuple[float, int, str]] = []  # (loop time, tie-breaker, key): a heap
        self._order = itertools.count()
        self._told: deque[str] = deque()  # looked at in the order they were told
        self._told_set: set[str] = set()
        self._looking: set[str] = set()
        self._again: dict[str, bool] = {}  # told while looked at (first?): looked at once more after
        self._wake = asyncio.Event()
        self._at_once = asyncio.Semaphore(at_once)
        self._looks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        # The hosts whose presence daemon runs (handlers.keep_the_room_open). kopf stops every daemon
        # when this replica pauses for another that leads (peering): with hosts and none of those
        # running, the room does not look, so only the leader admits. With no host at all nothing
        # can be admitted, and the room says so (HostNotFound) wherever it runs.
        self.present: set[str] = set()

    def stop(self) -> None:
        """The operator stops: the waiting migrations are the next one's, their series go."""
        if self._loop is not None:
            self._loop.cancel()
        for waiter in self.waiters.values():
            metrics.forget(waiter.namespace, waiter.name)
        self.ctx.handed.clear()

    def see(self, type: str | None, body: kopf.Body, logger: Logger) -> None:
        """A watch event of a DomainMigration (handlers.edited_after_the_end)."""
        if self._loop is None:
            # Started from a handler, not at start-up: kopf's Events are posted only from tasks
            # made in its handlers' context (posting.event looks up kopf's queue there).
            self._loop = asyncio.create_task(self.run())
        key = f"{body.metadata.namespace}/{body.metadata.name}"
        phase = (body.get("status") or {}).get("phase")
        gone = type == "DELETED" or bool(body.metadata.get("deletionTimestamp"))
        if gone or phase not in WAITING:
            self.left.discard(key)
            waiter = self.waiters.pop(key, None)
            if gone:
                self.ctx.handed.pop(key, None)
            if waiter is not None and gone:
                waiter.gone = True  # deleted while it waited: nothing moved, nothing to undo
                if waiter.key not in self._looking:
                    self.forget(waiter)
            return
        if key in self.left:
            return
        waiter = self.waiters.get(key)
        if waiter is None:
            self.waiters[key] = Waiter(self, body, logger)
        else:
            waiter.body = body
            if waiter.taken:
                waiter.reporter.body = body
        self.nudge(key)

    def forget(self, waiter: Waiter) -> None:
        """It will not run here: its slot (if it got one) and its metrics go."""
        if waiter.key not in self.ctx.daemons:
            self.ctx.admission.release(waiter.key)
        metrics.forget(waiter.namespace, waiter.name)

    def opened(self, host: str) -> None:
        self.present.add(host)
        self._wake.set()

    def closed(self, host: str) -> None:
        self.present.discard(host)

    @property
    def acting(self) -> bool:
        return bool(self.present) or not self.ctx.indexes.hosts

    def nudge(self, key: str, first: bool = False) -> None:
        if key in self._looking:
            self._again[key] = first or self._again.get(key, False)
        elif first:
            # Ahead of the rest: thousands just created, each waiting for its first look, would
            # otherwise keep an admitted one (and its slot) waiting minutes to begin.
            self._told_set.add(key)
            self._told.appendleft(key)
        elif key not in self._told_set:
            self._told_set.add(key)
            self._told.append(key)
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._wake.clear()  # before looking: news that comes meanwhile wakes the wait below
                if not self.acting:
                    await self._wake.wait()  # paused: a host's presence daemon opens the room again
                    continue
                now = loop.time()
                while self._due and self._due[0][0] <= now:
                    at, _, key = heapq.heappop(self._due)
                    waiter = self.waiters.get(key)
                    if waiter is not None and waiter.next_look == at:  # else an older plan, since changed
                        self.nudge(key)
                while self._told and not self._at_once.locked():
                    key = self._told.popleft()
                    self._told_set.discard(key)
                    waiter = self.waiters.get(key)
                    if waiter is None:
                        continue
                    await self._at_once.acquire()  # free (not locked): at once
                    self._looking.add(key)
                    task = asyncio.create_task(self._look(waiter))
                    self._looks.add(task)
                    task.add_done_callback(self._looks.discard)
                timeout = self._due[0][0] - loop.time() if self._due else None
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        finally:
            for task in self._looks:
                task.cancel()

    async def _look(self, waiter: Waiter) -> None:
        after: float | None = None
        try:
            after = await waiter.look()
        except Ended:
            self.forget(waiter)
        except kopf.PermanentError as exc:
            waiter.logger.warning(f"no longer looked at: {exc}")
            waiter.gone = True
        except kopf.TemporaryError as exc:
            waiter.logger.warning(str(exc))
            after = exc.delay or self.ctx.config.host_retry
        except Exception:
            waiter.logger.exception("looking at a waiting migration failed; looking again later")
            after = self.ctx.config.host_retry
        finally:
            waiter.parsed, waiter.status = None, UNREAD  # a waiting migration keeps no model

            self._looking.discard(waiter.key)
            self._at_once.release()
            self._wake.set()
            again = self._again.pop(waiter.key, None)
            if again is not None:
                self.nudge(waiter.key, first=again)
        if waiter.gone:
            self.waiters.pop(waiter.key, None)
            self.forget(waiter)
        elif self.waiters.get(waiter.key) is not waiter:
            return  # its phase moved on meanwhile (Validating: its daemon keeps the slot)
        elif after is None:
            del self.waiters[waiter.key]
            self.left.add(waiter.key)
        else:
            waiter.next_look = asyncio.get_running_loop().time() + after
            heapq.heappush(self._due, (waiter.next_look, next(self._order), waiter.key))
