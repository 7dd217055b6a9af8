"""One DomainMigration's life in the operator: admit it, run the engine, follow the live spec."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from controller.api.conditions import refresh_conditions, set_condition
from controller.api.enums import Phase, Reason
from controller.api.errors import SpecError
from controller.api.hypervisor_host import HypervisorHost
from controller.api.immutability import refused_changes
from controller.api.resource import GROUP, DomainMigration
from controller.api.status import ConditionType, DomainMigrationStatus, PhaseTransition, Placement, timestamp
from controller.backends.protocol import BackendError
from controller.engine import Controls, Engine, RunPolicy, StaticHosts, Transition
from controller.engine.admission import Ticket
from controller.engine.placement import waits_for_slot
from controller.engine.weighing import GuestInfo, Weigher, read_guest
from controller.operator import metrics
from controller.operator.context import Context
from controller.operator.host_resources import HostIndex, HostProblem, check_host, connect, hosts_in, lookup, resolve
from controller.operator.policy_resources import policy_for
from controller.operator.reporting import Reporter, known_status

Logger = logging.Logger | logging.LoggerAdapter[Any]
FINALIZER = f"{GROUP}/finalizer"
# Seconds a new daemon waits for kopf's finalizer before its first write: kopf's watch lags 10 s
# and more behind 10,000 migrations created at once, and each write before it costs kopf a retry.
FINALIZER_PATIENCE = 30.0
QUEUE_PATIENCE = 12  # host_retry intervals at most between two looks of a waiting migration at its place


def ticket_of(namespace: str, name: str, spec: Mapping[str, Any], created: str, memory_bytes: int = 0) -> Ticket:
    return Ticket(
        f"{namespace}/{name}",
        spec.get("source", ""),
        spec.get("destination") or "",
        spec.get("domain", ""),
        created,
        memory_bytes,
    )


def running_tickets(index: Mapping[str, Iterable[Ticket]]) -> list[Ticket]:
    return [ticket for store in index.values() for ticket in store]


class Ended(Exception):
    """The migration ended (or must stop) before the engine ran."""


class MigrationDaemon:
    def __init__(
        self,
        ctx: Context,
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        logger: Logger,
    ) -> None:
        self.ctx = ctx
        self.body = body
        self.stopped = stopped
        self.hosts: HostIndex = ctx.indexes.hosts
        self.policies = ctx.indexes.policies
        self.namespaces = ctx.indexes.namespace_labels
        self.logger = logger
        self.controls = Controls()
        self.reporter: Reporter  # once run() has read what is saved
        self.name = str(body.metadata.name)
        self.namespace = str(body.metadata.namespace)
        self.status = DomainMigrationStatus()
        self.accepted: dict[str, Any] = {}
        # News for this daemon: an edit (the resource's watch events), a slot, kopf stopping it (the
        # operator's sweeper, `Context.paused`). One event, no task per source: ten thousand waiting
        # migrations each waited on four tasks before (a fifth of the operator's memory).
        self.wake = asyncio.Event()
        self.tuned: dict[str, Any] = {}

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def driver(self) -> str:
        source = lookup(self.hosts, str(self.accepted.get("source", "")))
        return source.spec.driver if source else metrics.UNKNOWN

    async def run(self) -> None:
        if self.ctx.exiting:
            # kopf works through its queued events for a moment after it stopped the daemons, and
            # spawns one again for an object whose daemon has just left: nothing to start here.
            self.logger.debug("the operator is stopping: this migration is left to the next one")
            return
        self.ctx.daemons[self.key] = self
        watcher: asyncio.Task[None] | None = None
        try:
            await self.guarded()
            if not await self.read_saved():
                return
            try:
                self.parse()  # to refuse a bad spec now; a waiting migration keeps no parsed model
            except SpecError as exc:
                await self.end(Phase.Failed, Reason.InvalidSpec, "; ".join(exc.problems))
                return
            ticket = ticket_of(
                self.namespace, self.name, self.accepted, self.body.metadata.get("creationTimestamp", "")
            )
            self.status.destination = self.accepted.get("destination") or self.status.destination
            pending = self.status.phase is Phase.Pending
            if pending:
                metrics.mark_waiting(self.namespace, self.name, self.driver)
                await self.admit(ticket)
            else:
                self.ctx.admission.hold(ticket)
            migration = self.parse()  # with the destination admission chose, if it chose one
            if pending:
                self.choose_policy(migration)
            self.status.destination = self.accepted.get("destination")
            metrics.mark_active(self.namespace, self.name, self.driver)
            watcher = asyncio.create_task(self.follow_spec())
            await self.migrate(migration)
        except Ended:
            pass
        finally:
            if self.stopped.reason is not None and kopf.DaemonStoppingReason.OPERATOR_EXITING in self.stopped.reason:
                self.ctx.exiting = True
            if watcher is not None:
                watcher.cancel()
            if self.ctx.daemons.get(self.key) is self:
                del self.ctx.daemons[self.key]
            self.ctx.admission.release(self.key)
            metrics.forget(self.namespace, self.name)

    async def guarded(self) -> None:
        """Wait for kopf's finalizer before the first write. kopf adds it with a JSON patch that tests
        the resourceVersion, so a status patch of ours landing first fails it (422) and kopf tries
        again at the next event: three tries per migration in the 10,000 run, instead of one."""
        deadline = asyncio.get_running_loop().time() + FINALIZER_PATIENCE
        while not self.stopped and FINALIZER not in (self.body.metadata.get("finalizers") or []):
            if self.body.metadata.get("deletionTimestamp"):
                return
            self.wake.clear()
            if not await self.news(deadline):
                return  # write anyway: a finalizer kopf cannot add costs it retries, not the migration

    async def news(self, deadline: float) -> bool:
        """Wait for `wake` until the loop's `deadline`; False if none came. Paused meanwhile, so that
        kopf's stop reaches it (Context.wake_the_stopped)."""
        self.ctx.paused.add(self)
        try:
            async with asyncio.timeout_at(deadline):
                await self.wake.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self.ctx.paused.discard(self)

    async def read_saved(self) -> bool:
        """What the API server holds, not kopf's body: that is the body of the event that spawned this
        daemon, which may predate the last patches of the daemon before (in this process or another
        replica), the migrate-call marker among them; without it a running migration looks like
        somebody else's, and the engine would end it Busy. False: deleted, or finished."""
        saved = await self.ctx.kube.read("domainmigrations", self.name, self.namespace)
        if saved is None:
            return False  # deleted meanwhile
        saved_status = saved.get("status") or {}
        self.reporter = Reporter(self.ctx.kube, self.body, self.ctx.config.progress_interval, self.logger, saved_status)
        try:
            self.status = DomainMigrationStatus.parse(known_status(saved_status))
        except SpecError:
            self.status = DomainMigrationStatus()
        if self.status.phase.terminal:
            return False  # finished: never run again, whatever is re-applied
        self.accepted = dict(self.status.accepted_spec or saved.get("spec") or self.body.spec)
        self.tuned = {k: self.accepted.get("params", {}).get(k) for k in ("bandwidth", "downtime")}
        return True

    def parse(self) -> DomainMigration:
        meta = {"name": self.name, "namespace": self.namespace, "generation": self.body.metadata.get("generation")}
        spec = dict(self.accepted)
        if self.status.placement is not None and self.status.placement.destination == spec.get("destination"):
            spec.pop("destinationSelector", None)  # it chose the destination: the run has no more use for it
        migration = DomainMigration.parse({"metadata": meta, "spec": spec})
        migration.status = self.status
        return migration

    # -- before the engine: admission ------------------------------------------------------------

    def choose_policy(self, migration: DomainMigration) -> None:
        """Choose the MigrationPolicy once, at admission; the status keeps what it said."""
        labels = dict(self.body.metadata.get("labels") or {})
        chosen = policy_for(self.policies, self.namespaces, self.namespace, labels)
        if chosen is not None:
            migration.status.policy = chosen.metadata.name
            migration.status.applied_policy = chosen.spec.dump()

    async def admit(self, ticket: Ticket) -> None:
        other = self.ctx.admission.busy(ticket)
        if other is not None:
            await self.end(
                Phase.Failed,
                Reason.Busy,
                f"{ticket.domain} on {ticket.source} is already being migrated by DomainMigration {other.key}",
            )
        await self.wait_for_hosts()
        guest = await self.guest()
        ticket = ticket_of(self.namespace, self.name, self.accepted, ticket.created, guest.memory_bytes)
        weigher = None
        if ticket.flexible:
            selector = dict(self.accepted.get("destinationSelector") or {})
            weigher = Weigher(
                lambda: hosts_in(self.hosts),
                lambda host: connect(host, self.ctx.drivers, self.ctx.kube),
                self.ctx.admission,
                ticket.source,
                guest,
                self.namespace,
                selector,
                self.ctx.config.host_retry / 2,
            )
            ticket = await weigher.weigh(ticket)
        admission = self.ctx.admission
        self.wake.clear()  # acquire does not yield: set on return means admitted (or past admission elsewhere)
        at_once = (await admission.acquire(ticket, self.wake)).is_set()
        # A fixed-destination ticket is woken when admitted: it looks at its place less and less
        # often (its place is written when it has halved, see `place`). A flexible one weighs its
        # hosts again every host_retry: their free memory decides where it may go.
        patience = self.ctx.config.host_retry
        key = ticket.key
        while not at_once and key not in admission.admitted:
            where = self.place(admission.position(ticket))
            place = f" (place {where} in the queue)" if where is not None else ""
            placement = admission.placements.get(ticket.key)
            if placement is not None and placement.destination is None:
                await self.unscheduled(placement, place, where)
            else:
                await self.pending(Reason.WaitingForSlot, admission.why_waiting(ticket) + place, where)
            await self.pause(patience, lambda: key in admission.admitted)
            if weigher is not None:
                ticket = await weigher.weigh(ticket)
                admission.update(ticket)
            else:
                patience = min(2 * patience, QUEUE_PATIENCE * self.ctx.config.host_retry)
            admission.schedule()
        if self.status.queue_position is not None:
            self.status.queue_position = None  # saved with the first report of the run
        if ticket.flexible:
            self.scheduled(admission.admitted[ticket.key].destination, admission.placements.get(ticket.key))

    def place(self, position: int | None) -> int | None:
        """The place to show: the last one written until the real one has halved (or grown), so a
        migration deep in a long queue writes its status a few times while it waits, not once for
        every migration that starts before it."""
        shown = self.status.queue_position
        if position is None or shown is None or position > shown or 2 * position <= shown:
            return position
        return shown

    async def guest(self) -> GuestInfo:
        """The guest's memory and CPU, for admission to count and weigh; a guest the source does not
        define is the engine's to say (DomainNotFound, or already at the destination)."""
        source = lookup(self.hosts, str(self.accepted.get("source", "")))
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

    async def wait_for_hosts(self) -> None:
        while True:
            try:
                for field in ("source", "destination"):
                    if not self.accepted.get(field):
                        continue  # no destination: admission chooses one
                    host = check_host(self.hosts, self.accepted[field], field, self.namespace)
                    await self.reach(host)
                return
            except HostProblem as problem:
                if problem.final:
                    await self.end(Phase.Failed, problem.reason, problem.message)
                await self.pending(problem.reason, problem.message)
                await self.pause()

    async def reach(self, host: HypervisorHost) -> None:
        """Ask the host itself, not only its last probe: the probe may be old, or not seen yet."""
        config = await resolve(host, self.ctx.kube)
        try:
            conn = await self.ctx.drivers.get(config.driver).connect(config)
        except BackendError as exc:
            raise HostProblem(Reason.HostNotReady, f"HypervisorHost {host.name} is not reachable: {exc}") from None
        await conn.close()

    async def pause(self, patience: float | None = None, admitted: Callable[[], bool] | None = None) -> None:
        """Wait a little, for a slot, an abort or a stop, following the live spec meanwhile; end the
        migration if it was aborted or deleted."""
        deadline = asyncio.get_running_loop().time() + (patience or self.ctx.config.host_retry)
        while True:
            self.wake.clear()  # before looking: news that comes while we look wakes the wait below
            await self.follow()
            if self.stopped or self.controls.aborting or (admitted is not None and admitted()):
                break
            if not await self.news(deadline):
                break
        if self.stopped:
            raise Ended()  # deleted or the operator stops: nothing has moved, nothing to undo
        if self.controls.aborting:
            await self.end(Phase.Aborted, Reason.Aborted, "aborted while waiting to start; nothing moved")

    async def pending(self, reason: Reason, message: str, queue_position: int | None = None) -> None:
        said = (self.status.reason, self.status.message, self.status.queue_position)
        if said == (reason, message, queue_position):
            return
        self.status.reason, self.status.message, self.status.queue_position = reason, message, queue_position
        refresh_conditions(self.status, self.body.metadata.get("generation"), timestamp())
        await self.reporter.patch(self.status)

    async def end(self, phase: Phase, reason: Reason, message: str) -> None:
        before = self.status.phase
        self.status.phase, self.status.reason, self.status.message = phase, reason, message
        self.status.phase_transition_timestamps.append(PhaseTransition(phase=phase, time=timestamp()))
        refresh_conditions(self.status, self.body.metadata.get("generation"), timestamp())
        await self.reporter.patch(self.status)
        self.reporter.event(Transition(before, phase, reason, message))
        metrics.ended(self.namespace, self.name, self.status, self.driver)
        raise Ended()

    # -- the engine ------------------------------------------------------------------------------

    async def migrate(self, migration: DomainMigration) -> None:
        try:
            source = await resolve(
                check_host(self.hosts, self.accepted["source"], "source", self.namespace), self.ctx.kube
            )
            destination = await resolve(
                check_host(self.hosts, self.accepted["destination"], "destination", self.namespace), self.ctx.kube
            )
        except HostProblem as problem:
            await self.end(Phase.Failed, problem.reason, problem.message)
            return
        migration.status.accepted_spec = self.accepted
        engine = Engine(
            self.ctx.drivers, StaticHosts([source, destination]), RunPolicy(poll_interval=self.ctx.config.poll_interval)
        )
        running = asyncio.create_task(engine.run(migration, self.reporter, self.controls))
        stopping = asyncio.ensure_future(self.stopped.wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                running.result()
                return
            if self.stopped.reason is not None and kopf.DaemonStoppingReason.RESOURCE_DELETED in self.stopped.reason:
                # Deleted while running: abort first; kopf keeps the finalizer until we return.
                self.controls.request_abort()
                await running
                return
            # The operator stops (or another replica takes over): leave the migration to the
            # hypervisor; the next daemon re-attaches from the saved status.
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        finally:
            stopping.cancel()
            if not running.done():
                # This daemon itself was cancelled (kopf gave up waiting for it): the engine goes with
                # it, rather than run on past the operator's clean-up, which closes the drivers.
                running.cancel()

    async def follow_spec(self) -> None:
        """While the engine runs: follow the live spec, woken by the resource's watch events (`wake`,
        set by `edited_after_the_end` in handlers.py), not by polling."""
        while True:
            self.wake.clear()
            await self.follow()
            # A missed event costs at most host_retry: kopf's body is fresh when its handlers run.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ctx.config.host_retry):
                    await self.wake.wait()

    async def follow(self) -> None:
        """The live spec: abort, force-complete, live tuning, and refused changes (said in a condition)."""
        live = dict(self.body.spec)
        if live.get("abort"):
            self.controls.request_abort()
        if live.get("forceComplete"):
            self.controls.request_force_complete()
        for name in self.tuned:
            value = (live.get("params") or {}).get(name)
            if isinstance(value, int) and value != self.tuned[name]:
                self.tuned[name] = value
                self.controls.tune(name, value)
        chosen = self.status.placement.destination if self.status.placement else None
        refusals_changed = self.reporter.refuse_changes(refused_changes(self.accepted, live, chosen))
        # observedGeneration catches up; not before this daemon's first write, which is on its
        # way (a wait, a transition or an end is written at once) and records it anyway.
        behind = self.reporter.observed not in (None, self.body.metadata.get("generation"))
        if refusals_changed or behind:
            await self.reporter.patch(self.reporter.last or self.status)
