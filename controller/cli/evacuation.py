"""`domig evacuate HOST`: one live migration per domain running on the host, each destination
chosen as `domig migrate` chooses one, run side by side through one admission so that no limit is
exceeded and no destination is promised the same free memory twice."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.markup import escape

from controller.api.enums import Phase
from controller.api.errors import SpecError
from controller.api.hypervisor_host import EvacuatedDomain, Evacuation
from controller.api.resource import DomainMigration
from controller.api.status import DomainMigrationStatus, DomainState, timestamp
from controller.backends.protocol import BackendError, DomainInfo
from controller.backends.registry import DriverTable
from controller.cli.destinations import Placer, scheduled, ticket_for
from controller.cli.documents import HostsFile, load_hosts_file
from controller.cli.names import generate_name
from controller.cli.running import EXIT_ABORTED, EXIT_FAILED, EXIT_OK
from controller.engine import Controls, Engine, RunPolicy

# What a host emptied for maintenance wants of each domain: it keeps running throughout (live),
# is defined where it lands (persistDest) and nowhere else (undefineSource), so nobody starts the
# old copy by mistake. The embedded default migration (`domig demo`) asks the same.
FLAGS = ["live", "persistDest", "undefineSource"]
ACTIVE = (DomainState.running, DomainState.paused)  # a paused guest holds its memory: it must go too
UNPLACEABLE, NOT_STARTED = "Unplaceable", "NotStarted"
RECHECK = 5.0  # seconds


class Pulse:
    """Wakes every waiting migration when one ends (its slot and the room it left are free)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, also: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(self._event.wait()), asyncio.ensure_future(also.wait())]
        try:
            # Also now and then: a host may change outside domig (a guest stopped, memory freed).
            await asyncio.wait(waits, timeout=RECHECK, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()


class Evacuator:
    def __init__(
        self, hosts: HostsFile, source: str, max_parallel: int, dry_run: bool, err: Console, poll: float = 0.25
    ) -> None:
        self.hosts = hosts
        self.source = source
        self.dry_run = dry_run
        self.err = err
        self.poll = poll
        self.drivers = DriverTable()
        self.placer = Placer(hosts, self.drivers, max_parallel)
        if dry_run:
            # Nothing moves, so a host's free memory never changes, and what a dry run "sent" there
            # must keep counting against it: with the clock stopped, every reading is fresh and no
            # reading is newer than an arrival (admission counts arrivals since the last reading).
            self.placer = Placer(hosts, self.drivers, max_parallel, fresh_for=1.0, clock=lambda: 0.0)
        self.pulse = Pulse()
        self.ended_count = 0  # migrations ended so far: what a weighing must be newer than
        self.aborting = False
        self.controls: dict[str, Controls] = {}

    def abort(self) -> None:
        """Ctrl-C: what runs is aborted (each guest stays on its source), what waits does not start."""
        if not self.aborting:
            self.err.print("[yellow]aborting: running migrations are aborted, waiting ones not started[/]")
        self.aborting = True
        for controls in self.controls.values():
            controls.request_abort()
        self.pulse.fire()

    async def active(self) -> list[DomainInfo]:
        """The domains running (or paused) on the host, the largest first: the big ones take the
        room while there is most of it, the small ones fill what is left."""
        config = self.hosts.find(self.source)
        assert config is not None, "cmd_evacuate checked the host is in the file"
        conn = await self.drivers.get(config.driver).connect(config)
        try:
            found = [info for info in await conn.list_domains() if info.state in ACTIVE]
        finally:
            await conn.close()
        return sorted(found, key=lambda info: (-info.memory_bytes, info.name))

    async def run(self) -> tuple[Evacuation, list[str]]:
        """The evacuation's record, and what still runs on the host after it."""
        started = timestamp()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.abort)
        try:
            domains = await self.active()
            rows = await asyncio.gather(*(self.one(index, info) for index, info in enumerate(domains)))
            left = [info.name for info in await self.active()]
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.drivers.close()
        return self.record(started, list(rows), left), left

    def migration(self, index: int, domain: str) -> DomainMigration:
        meta = {"name": f"{generate_name(domain, 'elsewhere')}{index + 1}"}
        spec = {"domain": domain, "source": self.source, "flags": FLAGS, "dryRun": self.dry_run}
        return DomainMigration.parse({"metadata": meta, "spec": spec})

    async def one(self, index: int, info: DomainInfo) -> EvacuatedDomain:
        migration = self.migration(index, info.name)
        row = EvacuatedDomain(domain=info.name, migration=migration.metadata.name, phase=Phase.Pending.value)
        try:
            guest = await self.placer.guest(self.source, info.name)
        except BackendError as exc:
            return self.ended(row, Phase.Failed.value, f"cannot read it on {self.source}: {exc}")
        if guest is None:
            return self.ended(row, Phase.Failed.value, f"no longer defined on {self.source}")
        admission, weigher = self.placer.admission, self.placer.weigher(migration, guest)
        weighed_after = self.ended_count
        ticket = await weigher.weigh(ticket_for(migration, f"{index:06d}", guest.memory_bytes))
        admitted = await admission.acquire(ticket)
        while not admitted.is_set():
            if self.aborting:
                admission.release(ticket.key)
                return self.ended(row, NOT_STARTED, "not started: the evacuation was aborted")
            current = weighed_after == self.ended_count  # no migration ended while it was weighed
            if current and not admission.admitted:
                # Nothing in flight, and a weighing since the last one ended found no host: no
                # migration will end to change that (destinations only fill up); waiting is forever.
                placement = admission.placements.get(ticket.key)
                why = placement.message if placement is not None else admission.why_waiting(ticket)
                admission.release(ticket.key)
                return self.ended(row, UNPLACEABLE, why)
            if current:
                await self.pulse.wait(admitted)
            # A reading taken while a guest had arrived but its migration had not yet ended counts
            # the guest twice (on the host, and on its way): weigh again after every end.
            weighed_after = self.ended_count
            ticket = await weigher.weigh(ticket)
            admission.update(ticket)
            admission.schedule()
        try:
            if self.aborting:
                return self.ended(row, NOT_STARTED, "not started: the evacuation was aborted")
            chosen = admission.admitted[ticket.key].destination
            placement = admission.placements[ticket.key]
            scheduled(migration, placement)
            row.destination = chosen
            self.err.print(f"[dim]start[/] {escape(info.name)} to {placement.message}", soft_wrap=True)
            return await self.migrate(row, migration)
        finally:
            admission.release(ticket.key)
            self.ended_count += 1
            self.pulse.fire()

    async def migrate(self, row: EvacuatedDomain, migration: DomainMigration) -> EvacuatedDomain:
        controls = self.controls[row.migration] = Controls()
        began = time.monotonic()
        try:
            engine = Engine(self.drivers, self.hosts, RunPolicy(poll_interval=self.poll))
            status: DomainMigrationStatus = await engine.run(migration, None, controls)
        finally:
            del self.controls[row.migration]
        reason = status.reason.value if status.reason else "-"
        took = f" in {time.monotonic() - began:.1f}s"
        return self.ended(row, status.phase.value, f"{status.message or ''}", f" ({reason}){took}")

    def ended(self, row: EvacuatedDomain, phase: str, message: str, detail: str = "") -> EvacuatedDomain:
        row.phase, row.message = phase, message
        style = "green" if phase == Phase.Succeeded.value else "red"
        where = f" to {row.destination}" if row.destination else ""
        self.err.print(
            f"[dim]end[/]   {escape(row.domain)}{where}: [{style}]{phase}[/]{detail}: {escape(message)}", soft_wrap=True
        )
        return row

    def record(self, started: str, rows: list[EvacuatedDomain], left: list[str]) -> Evacuation:
        count = {phase: [r for r in rows if r.phase == phase] for phase in {r.phase for r in rows}}
        done = len(count.get(Phase.Succeeded.value, []))
        failed = [r for r in rows if r.phase not in (Phase.Succeeded.value, UNPLACEABLE, NOT_STARTED)]
        unplaceable = count.get(UNPLACEABLE, [])
        if self.aborting:
            phase = "Cancelled"
        elif left and not self.dry_run:
            phase = "Incomplete"
        else:
            phase = "Completed" if done == len(rows) else "Incomplete"
        return Evacuation(
            phase=phase,
            started=started,
            namespace="",  # standalone: no namespace holds these migrations
            total=len(rows),
            done=done,
            failed=len(failed),
            unplaceable=len(unplaceable),
            message=self.summary(rows, done, unplaceable, failed, count.get(NOT_STARTED, []), left),
            migrations=rows,
        )

    def summary(
        self,
        rows: list[EvacuatedDomain],
        done: int,
        unplaceable: list[EvacuatedDomain],
        failed: list[EvacuatedDomain],
        not_started: list[EvacuatedDomain],
        left: list[str],
    ) -> str:
        if not rows:
            return f"{self.source} runs no domain: nothing to evacuate"
        verb = "dry run: would evacuate" if self.dry_run else "evacuated"
        parts = [f"{verb} {done} of {len(rows)} domains from {self.source}"]
        if unplaceable:
            said = ", ".join(f"{r.domain} ({r.message})" for r in unplaceable)
            parts.append(f"{len(unplaceable)} cannot be placed: {said}")
        if failed:
            said = ", ".join(f"{r.domain} ({r.phase}: {r.message})" for r in failed)
            parts.append(f"{len(failed)} {'would fail' if self.dry_run else 'failed'}: {said}")
        if not_started:
            parts.append(f"{len(not_started)} not started (aborted): {', '.join(r.domain for r in not_started)}")
        listed = {r.domain for r in [*unplaceable, *failed, *not_started]}
        others = [name for name in left if name not in listed]
        if others and not self.dry_run:
            parts.append(f"{self.source} also runs {', '.join(others)}")
        if self.aborting:
            parts.append(f"every domain still runs, on {self.source} or where it moved")
        return "; ".join(parts)


def table(evacuation: Evacuation) -> str:
    """Plain columns, as kubectl prints them: easy to read, to grep and to cut."""
    lines = [("DOMAIN", "DESTINATION", "OUTCOME", "MESSAGE")]
    lines += [(r.domain, r.destination or "-", r.phase, r.message) for r in evacuation.migrations]
    widths = [max(len(line[column]) for line in lines) for column in range(3)]
    return "\n".join(
        "   ".join(cell.ljust(width) for cell, width in zip(line[:3], widths, strict=True)) + "   " + line[3]
        for line in lines
    )


def exit_code(evacuation: Evacuation, left: list[str], dry_run: bool) -> int:
    if evacuation.phase == "Cancelled":
        return EXIT_ABORTED
    if dry_run:
        return EXIT_OK if evacuation.done == evacuation.total else EXIT_FAILED
    return EXIT_OK if not left else EXIT_FAILED


def cmd_evacuate(args: argparse.Namespace) -> int:
    if args.max_parallel < 1:
        raise SpecError([f"--max-parallel: must be at least 1, got {args.max_parallel}"])
    hosts = load_hosts_file(Path(args.hosts))
    if hosts.find(args.host) is None:
        raise SpecError([f"HOST: no host named {args.host!r} in {args.hosts} (known: {', '.join(hosts.names)})"])
    err = Console(stderr=True)
    try:
        evacuation, left = asyncio.run(Evacuator(hosts, args.host, args.max_parallel, args.dry_run, err).run())
    except BackendError as exc:
        err.print(f"[red]domig: evacuate: cannot list the domains of {escape(args.host)}:[/] {escape(str(exc))}")
        return EXIT_FAILED
    if args.output == "json":
        print(json.dumps(evacuation.dump(), indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(evacuation.dump(), sort_keys=False), end="")
    elif evacuation.migrations:
        print(table(evacuation))
    code = exit_code(evacuation, left, args.dry_run)
    err.print(f"[bold {'green' if code == EXIT_OK else 'red'}]{escape(evacuation.message)}[/]", soft_wrap=True)
    return code
