"""A DomainMigration as the operator knows it, and the daemon that runs it once it has begun."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from controller.api.conditions import refresh_conditions
from controller.api.enums import Phase, Reason
from controller.api.errors import SpecError
from controller.api.immutability import refused_changes
from controller.api.resource import GROUP, DomainMigration
from controller.api.status import DomainMigrationStatus, PhaseTransition, timestamp
from controller.engine import Controls, Engine, RunPolicy, StaticHosts, Transition
from controller.engine.admission import Ticket
from controller.operator import metrics
from controller.operator.context import Context
from controller.operator.host_resources import HostProblem, check_host, lookup, resolve
from controller.operator.reporting import Reporter, known_status

Logger = logging.Logger | logging.LoggerAdapter[Any]
FINALIZER = f"{GROUP}/finalizer"
# Seconds a new daemon waits for kopf's finalizer before its first write: kopf's watch lags 10 s
# and more behind 10,000 migrations created at once, and each write before it costs kopf a retry.
FINALIZER_PATIENCE = 30.0


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


def status_of(saved: Mapping[str, Any]) -> DomainMigrationStatus:
    """Our status as saved; a fresh one where what is there is not ours to read."""
    try:
        return DomainMigrationStatus.parse(known_status(saved))
    except SpecError:
        return DomainMigrationStatus()


class Ended(Exception):
    """The migration ended (or must stop) before the engine ran."""


class Migration:
    """What the waiting room (waiting.py) and the daemon below know of one DomainMigration."""

    def __init__(self, ctx: Context, body: kopf.Body, logger: Logger) -> None:
        self.ctx = ctx
        self.body = body
        self.logger = logger
        self.name = str(body.metadata.name)
        self.namespace = str(body.metadata.namespace)
        self.status = DomainMigrationStatus()
        self.accepted: dict[str, Any] = {}
        self.reporter: Reporter  # once what is saved has been read

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def driver(self) -> str:
        source = lookup(self.ctx.indexes.hosts, str(self.accepted.get("source", "")))
        return source.spec.driver if source else metrics.UNKNOWN

    def take_saved(self, saved_status: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
        """Start from the status as saved; False if it is finished (never run again, whatever is re-applied)."""
        self.reporter = Reporter(self.ctx.kube, self.body, self.ctx.config.progress_interval, self.logger, saved_status)
        self.status = status_of(saved_status)
        if self.status.phase.terminal:
            return False
        self.accepted = dict(self.status.accepted_spec or spec)
        return True

    def parse(self) -> DomainMigration:
        meta = {"name": self.name, "namespace": self.namespace, "generation": self.body.metadata.get("generation")}
        spec = dict(self.accepted)
        if self.status.placement is not None and self.status.placement.destination == spec.get("destination"):
            spec.pop("destinationSelector", None)  # it chose the destination: the run has no more use for it
        migration = DomainMigration.parse({"metadata": meta, "spec": spec})
        migration.status = self.status
        return migration

    async def end(self, phase: Phase, reason: Reason, message: str) -> None:
        before = self.status.phase
        self.status.phase, self.status.reason, self.status.message = phase, reason, message
        self.status.phase_transition_timestamps.append(PhaseTransition(phase=phase, time=timestamp()))
        refresh_conditions(self.status, self.body.metadata.get("generation"), timestamp())
        await self.reporter.patch(self.status)
        self.reporter.event(Transition(before, phase, reason, message))
        metrics.ended(self.namespace, self.name, self.status, self.driver)
        raise Ended()

    async def note_edits(self) -> None:
        """Refused spec changes (said in a condition), and observedGeneration catching up; not
        before the first write, which is on its way (a wait, a transition or an end is written at
        once) and records it anyway."""
        chosen = self.status.placement.destination if self.status.placement else None
        refusals_changed = self.reporter.refuse_changes(refused_changes(self.accepted, dict(self.body.spec), chosen))
        behind = self.reporter.observed not in (None, self.body.metadata.get("generation"))
        if refusals_changed or behind:
            await self.reporter.patch(self.reporter.last or self.status)


class MigrationDaemon(Migration):
    """An admitted migration's run: kopf spawns it for the active phases only (handlers.py); a
    waiting one is the waiting room's, which writes Validating when it admits it."""

    def __init__(self, ctx: Context, body: kopf.Body, stopped: kopf.DaemonStopped, logger: Logger) -> None:
        super().__init__(ctx, body, logger)
        self.stopped = stopped
        self.controls = Controls()
        # News for this daemon: an edit (the resource's watch events), kopf stopping it (the
        # operator's sweeper, `Context.paused`). One event, no task per source.
        self.wake = asyncio.Event()
        self.tuned: dict[str, Any] = {}

    async def run(self) -> None:
        if self.ctx.exiting:
            # kopf works through its queued events for a moment after it stopped the daemons, and
            # spawns one again for an object whose daemon has just left: nothing to start here.
            self.logger.debug("the operator is stopping: this migration is left to the next one")
            return
        if Phase(self.body.status.get("phase") or Phase.Pending).terminal:
            return  # ended (a terminal phase is final): kopf removes its finalizer once this returns
        self.ctx.daemons[self.key] = self
        watcher: asyncio.Task[None] | None = None
        try:
            await self.guarded()
            handed = self.ctx.handed.pop(self.key, None)
            if handed is not None:
                migration = self.take_handed(*handed)
            elif not await self.read_saved():
                return
            else:
                try:
                    migration = self.parse()
                except SpecError as exc:
                    await self.end(Phase.Failed, Reason.InvalidSpec, "; ".join(exc.problems))
                    return
            self.tuned = {k: self.accepted.get("params", {}).get(k) for k in ("bandwidth", "downtime")}
            created = self.body.metadata.get("creationTimestamp", "")
            self.ctx.admission.hold(ticket_of(self.namespace, self.name, self.accepted, created))
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
        again at the next event."""
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

    def take_handed(self, migration: DomainMigration, reporter: Reporter) -> DomainMigration:
        """What the waiting room began here: its status is the one it wrote, the latest there is."""
        self.status = migration.status
        self.accepted = dict(self.status.accepted_spec or {})
        self.reporter = reporter
        reporter.body = self.body
        return migration

    async def read_saved(self) -> bool:
        """What the API server holds, not kopf's body: that is the body of the event that spawned this
        daemon, which may predate the last patches of the daemon before (in this process or another
        replica), the migrate-call marker among them; without it a running migration looks like
        somebody else's, and the engine would end it Busy. False: deleted, finished, or not begun."""
        saved = await self.ctx.kube.read("domainmigrations", self.name, self.namespace)
        if saved is None:
            return False  # deleted meanwhile
        if not self.take_saved(saved.get("status") or {}, saved.get("spec") or self.body.spec):
            return False
        if not self.status.phase.active:
            return False  # kopf's filter saw a later phase than the server holds: never here
        return True

    # -- the engine ------------------------------------------------------------------------------

    async def migrate(self, migration: DomainMigration) -> None:
        try:
            source = await resolve(
                check_host(self.ctx.indexes.hosts, self.accepted["source"], "source", self.namespace), self.ctx.kube
            )
            destination = await resolve(
                check_host(self.ctx.indexes.hosts, self.accepted["destination"], "destination", self.namespace),
                self.ctx.kube,
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
            reason = self.stopped.reason or kopf.DaemonStoppingReason(0)
            if reason == kopf.DaemonStoppingReason.FILTERS_MISMATCH:
                await running  # the phase went back to waiting under it: the run's own end decides
                return
            if kopf.DaemonStoppingReason.RESOURCE_DELETED in reason:
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
        """The live spec: abort, force-complete, live tuning, and refused changes."""
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
        await self.note_edits()
