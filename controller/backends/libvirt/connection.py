"""One open libvirt connection, speaking the backend protocol.

Every libvirt call blocks, so each runs in the driver's thread pool. The migrate call itself
blocks until the migration ends, so it runs in a thread of its own (MigrationTask) and migrate()
returns once libvirt reports the job. While the task is known, job() reports libvirt's live job
statistics and then the call's outcome; after a restart (no task) it asks libvirt alone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import libvirt

from controller.api.enums import Reason
from controller.backends.libvirt import capacity, domains
from controller.backends.libvirt.errors import backend_error, code_of, peer_unreachable, redact
from controller.backends.libvirt.events import Waker
from controller.backends.libvirt.migration import Call, MigrationTask, managed_call, peer_to_peer_call
from controller.backends.libvirt.translate import (
    finished_phase,
    flags_of,
    job_of,
    params_of,
    running_migration,
)
from controller.backends.protocol import (
    NO_JOB,
    BackendError,
    Connection,
    DomainInfo,
    HostCapacity,
    HostConfig,
    JobInfo,
    JobPhase,
)
from controller.backends.protocol import MigrationRequest as Request

T = TypeVar("T")
Opener = Callable[[HostConfig], Any]  # blocking: a new virConnect to the host
Starter = Callable[[MigrationTask], Awaitable[Call]]  # opens what the call needs, returns it


class PeerUnreachable(Exception):
    """A peer-to-peer migrate call refused at once: the source daemon could not reach the destination."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


START_TIMEOUT = 60.0  # seconds for libvirt to show the job after the call (Begin + Prepare)
POSTCOPY_READY_TIMEOUT = 60.0
POLL = 0.05


class LibvirtConnection(Connection):
    def __init__(self, host: HostConfig, conn: Any, pool: Executor, opener: Opener, peer_to_peer: bool | None) -> None:
        self.host = host
        self.peer_to_peer = peer_to_peer  # None: peer-to-peer, managed when the source daemon cannot reach
        self._conn = conn
        self._pool = pool
        self._open = opener
        self._tasks: dict[str, MigrationTask] = {}
        self._iterations: dict[str, int] = {}  # domain UUID -> last MIGRATION_ITERATION event
        self._completed: dict[str, dict[str, Any]] = {}  # domain UUID -> JOB_COMPLETED statistics
        self._postcopy: set[str] = set()  # domain UUIDs whose source half was suspended for post-copy
        self._waker = Waker()
        self._looked = 0  # the waker's count when job() last looked: news() after it ends the pause
        self._callbacks: list[int] = []

    # -- plumbing ---------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any, what: str = "") -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except libvirt.libvirtError as exc:
            raise backend_error(exc, self.host.credentials, what) from None

    async def watch_events(self) -> None:
        """Progress events wake the waits in migrate() and start_postcopy(); jobStats stays the truth."""

        def register() -> None:
            for event, callback in (
                (libvirt.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, self._on_iteration),
                (libvirt.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._on_completed),
                (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle),
            ):
                self._callbacks.append(self._conn.domainEventRegisterAny(None, event, callback, None))

        await self._call(register)

    def _on_iteration(self, _conn: Any, dom: Any, iteration: int, _opaque: Any) -> None:
        self._iterations[dom.UUIDString()] = int(iteration)
        self._waker.wake()

    def _on_lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        # A short post-copy phase can start and end between two polls; the event cannot be missed.
        if event == libvirt.VIR_DOMAIN_EVENT_SUSPENDED and detail == libvirt.VIR_DOMAIN_EVENT_SUSPENDED_POSTCOPY:
            self._postcopy.add(dom.UUIDString())
            self._waker.wake()

    def _on_completed(self, _conn: Any, dom: Any, params: dict[str, Any], _opaque: Any) -> None:
        self._completed[dom.UUIDString()] = dict(params)
        self._waker.wake()

    async def _domain(self, name: str) -> Any:
        dom = await self._call(domains.find, self._conn, name)
        if dom is None:
            raise BackendError(f"no domain {name!r} on {self.host.name}", Reason.DomainNotFound)
        return dom

    # -- host and domains -------------------------------------------------------------------------

    async def hostname(self) -> str:
        return str(await self._call(self._conn.getHostname))

    async def version(self) -> str:
        def read() -> str:
            kind = self._conn.getType()
            return f"libvirt {_dotted(self._conn.getLibVersion())}, {kind} {_dotted(self._conn.getVersion())}"

        return await self._call(read)

    async def list_domains(self) -> list[DomainInfo]:
        return await self._call(domains.list_all, self._conn)

    async def lookup(self, name_or_uuid: str) -> DomainInfo | None:
        return await self._call(domains.lookup, self._conn, name_or_uuid)

    async def capacity(self) -> HostCapacity:
        return await self._call(capacity.capacity_of, self._conn)

    async def guest_cpu(self, domain: str) -> str | None:
        return await self._call(capacity.guest_cpu_of, await self._domain(domain))

    async def cpu_fits(self, guest_cpu: str) -> tuple[bool, str] | None:
        return await self._call(capacity.cpu_fits_on, self._conn, guest_cpu)

    # -- migration --------------------------------------------------------------------------------

    async def migrate(self, destination: Connection, request: Request) -> str | None:
        if not isinstance(destination, LibvirtConnection):
            raise BackendError("the libvirt driver migrates only to another libvirt host", Reason.NoSupport)
        earlier = self._tasks.get(request.domain)
        if earlier is not None and not earlier.done:
            raise BackendError(f"domain {request.domain!r} is already migrating", Reason.Busy)
        dom = await self._domain(request.domain)
        params = params_of(request, with_uri=await self._needs_uri(destination, request.hostname))
        warning = None
        if self.peer_to_peer is not False:
            try:
                await self._begin(dom, request, self._peer_to_peer(destination, params, request))
                return None
            except PeerUnreachable as exc:
                warning = self._fall_back(destination, exc.message)
        await self._begin(dom, request, self._managed(dom, destination, params, request))
        return warning

    def _fall_back(self, destination: LibvirtConnection, why: str) -> str:
        """The source daemon cannot reach the destination: managed if the host left it open, else fail."""
        uri, source, target = destination.host.uri, self.host.name, destination.host.name
        cannot = f"{source}'s libvirt daemon cannot reach {target} at {uri} for a peer-to-peer migration ({why})"
        if self.peer_to_peer:
            raise BackendError(
                f"{cannot}; {source} says peerToPeer: true, so nothing was tried instead: let that daemon reach"
                f" and log in to {uri}, or set peerToPeer: false",
                Reason.HostUnreachable,
            )
        return (
            f"{cannot}, so the migration runs managed, driven by this controller: libvirt aborts it if the"
            f" controller dies before it ends (the domain then stays on {source}); let that daemon reach and"
            f" log in to {uri} for peer-to-peer, or set peerToPeer: false on {source} to choose managed"
        )

    def _peer_to_peer(self, destination: LibvirtConnection, params: dict[str, Any], request: Request) -> Starter:
        async def start(task: MigrationTask) -> Call:
            task.peer_to_peer = True
            source_conn = await self._open_own(self.host)
            flags = flags_of(request.flags, peer_to_peer=True)
            return peer_to_peer_call(source_conn, task.uuid, destination.host.uri, params, flags)

        return start

    def _managed(self, dom: Any, destination: LibvirtConnection, params: dict[str, Any], request: Request) -> Starter:
        async def start(task: MigrationTask) -> Call:
            source_conn = await self._open_own(self.host)
            try:
                destination_conn = await self._open_own(destination.host)
            except BackendError:
                await self._call(source_conn.close)
                raise
            abort = _quietly(dom.abortJob)

            def lost(_conn: Any, reason: int, _opaque: Any) -> None:
                # The Finish step of a managed migration needs this connection: once it is gone the
                # migration can never complete, so stop it now rather than let it run on.
                if not task.done and task.destination_lost is None:
                    why = _CLOSE_REASONS.get(reason, f"reason {reason}")
                    task.destination_lost = f"lost the connection to {destination.host.name}'s libvirt daemon ({why})"
                    try:
                        self._pool.submit(abort)
                    except RuntimeError:  # the driver is closing: abort from a thread of our own
                        threading.Thread(target=abort, daemon=True).start()

            await self._call(destination_conn.registerCloseCallback, lost, None)
            return managed_call(source_conn, destination_conn, task.uuid, params, flags_of(request.flags))

        return start

    async def _open_own(self, host: HostConfig) -> Any:
        return await self._call(self._open, host, what=f"cannot open a connection to {host.name}")

    async def _begin(self, dom: Any, request: Request, starter: Starter) -> None:
        task = MigrationTask(request.domain, dom.UUIDString())
        call = await starter(task)
        self._completed.pop(task.uuid, None)
        self._postcopy.discard(task.uuid)
        self._iterations.pop(task.uuid, None)
        self._tasks[request.domain] = task
        task.start(call, self._waker.wake)
        await self._until_started(dom, task)
        if "downtime" in request.params and not task.done:
            await self._set_downtime(dom, task, int(request.params["downtime"]))

    async def _needs_uri(self, destination: LibvirtConnection, hostname: str) -> bool:
        """Whether to pass migrate_uri: not when it is just the destination's own host name.

        That name is what the engine synthesises when nothing better is known, and libvirt's
        destination synthesises a better one itself: its configured migration_host first.
        """
        if "://" in hostname:
            return True
        try:
            return hostname != await destination.hostname()
        except BackendError:
            return True

    async def _until_started(self, dom: Any, task: MigrationTask) -> None:
        deadline = asyncio.get_running_loop().time() + START_TIMEOUT
        while not task.done:
            stats = await self._call(domains.job_stats, dom)
            if running_migration(stats):
                task.last_stats = stats
                return
            if asyncio.get_running_loop().time() > deadline:
                return  # slow to appear, but the call runs: job() follows it
            await self._waker.wait(POLL)
        exc = task.future.exception()
        if exc is not None:
            self._tasks.pop(task.domain, None)
            if isinstance(exc, libvirt.libvirtError):
                # Failed before any job showed: whether the source daemon could not reach the
                # destination, or our own connection to the source broke, is ours to tell.
                if not task.last_stats and task.peer_to_peer and peer_unreachable(exc):
                    if await self._call(self._conn.isAlive):
                        raise PeerUnreachable(backend_error(exc, self.host.credentials).message)
                raise backend_error(exc, self.host.credentials)
            raise BackendError(redact(f"the migrate call failed: {exc!r}", self.host.credentials))

    async def _set_downtime(self, dom: Any, task: MigrationTask, downtime_ms: int) -> None:
        try:
            await self._call(dom.migrateSetMaxDowntime, downtime_ms, 0)
        except BackendError as exc:
            if task.done:
                return  # finished before the limit mattered
            # Running on without the limit the user set would be running a different migration.
            task.abort_requested = True
            await self._call(dom.abortJob)
            raise BackendError(f"could not set the downtime limit ({exc}); the migration was aborted") from None

    async def news(self, domain: str, seconds: float) -> None:
        await self._waker.wait(seconds, since=self._looked)

    async def job(self, domain: str) -> JobInfo:
        self._looked = self._waker.wakes
        task = self._tasks.get(domain)
        if task is None:
            return await self._job_without_task(domain)
        if not task.done:
            live = await self._live_job(task)
            if live is not None:
                return live
            # libvirt shows no job any more: the migrate call is returning; wait for its outcome.
            deadline = asyncio.get_running_loop().time() + 10
            while not task.done and asyncio.get_running_loop().time() < deadline:
                await self._waker.wait(POLL)
            if not task.done:
                return job_of(task.last_stats, JobPhase.active, postcopy=task.postcopy_seen)
        return await self._outcome(task)

    async def _live_job(self, task: MigrationTask) -> JobInfo | None:
        def read() -> tuple[dict[str, Any], bool]:
            dom = domains.find(self._conn, task.uuid)
            if dom is None:
                return {}, False
            return domains.job_stats(dom), domains.in_postcopy(dom)

        stats, postcopy = await self._call(read)
        if not running_migration(stats):
            return None
        task.last_stats = stats
        task.postcopy_seen = task.postcopy_seen or postcopy or task.uuid in self._postcopy
        phase = JobPhase.postcopy if task.postcopy_seen else JobPhase.active
        return job_of(stats, phase, self._iterations.get(task.uuid), task.postcopy_seen)

    async def _outcome(self, task: MigrationTask) -> JobInfo:
        task.postcopy_seen = task.postcopy_seen or task.uuid in self._postcopy
        exc = task.future.exception()
        if exc is None:
            stats = self._completed.get(task.uuid) or task.future.result() or task.last_stats
            return job_of(stats, JobPhase.completed, self._iterations.get(task.uuid), task.postcopy_seen)
        message = redact(str(exc), self.host.credentials)
        last = job_of(task.last_stats, JobPhase.failed, self._iterations.get(task.uuid), task.postcopy_seen)
        if task.destination_lost is not None:
            return dataclasses.replace(last, error=f"{task.destination_lost}: {message}", failed_side="destination")
        aborted = isinstance(exc, libvirt.libvirtError) and code_of(exc) == libvirt.VIR_ERR_OPERATION_ABORTED
        if task.abort_requested or aborted:
            return dataclasses.replace(last, phase=JobPhase.cancelled, error=message)
        source_alive = await self._call(_alive, self._conn, task.uuid)
        return dataclasses.replace(last, error=message, failed_side="destination" if source_alive else "source")

    async def _job_without_task(self, domain: str) -> JobInfo:
        """After a restart: libvirt's active job, else the finished one it still remembers."""

        def read() -> JobInfo:
            dom = domains.find(self._conn, domain)
            if dom is None:
                return NO_JOB  # undefined after success, or never here: the engine asks the destination
            stats = domains.job_stats(dom)
            if running_migration(stats):
                postcopy = domains.in_postcopy(dom)
                return job_of(stats, JobPhase.postcopy if postcopy else JobPhase.active, postcopy=postcopy)
            done = domains.job_stats(dom, completed=True)
            phase = finished_phase(done)
            alive = domains.active(dom)
            if phase is None or (phase is JobPhase.completed and alive):
                return NO_JOB  # nothing, or an older migration's record: the domain runs here
            info = job_of(done, phase)
            if phase is JobPhase.failed:
                info = dataclasses.replace(info, failed_side="destination" if alive else "source")
            return info

        return await self._call(read)

    # -- controls ---------------------------------------------------------------------------------

    async def abort(self, domain: str) -> None:
        task = self._tasks.get(domain)
        if task is not None:
            task.abort_requested = True
        dom = await self._domain(domain)
        await self._call(dom.abortJob, what="abort")

    async def start_postcopy(self, domain: str) -> None:
        dom = await self._domain(domain)
        # QEMU refuses the switch until the first pre-copy pass is under way.
        deadline = asyncio.get_running_loop().time() + POSTCOPY_READY_TIMEOUT
        while True:
            stats = await self._call(domains.job_stats, dom)
            if not running_migration(stats):
                raise BackendError(f"domain {domain!r} has no migration running")
            sent = int(stats.get("memory_processed", stats.get("data_processed", 0)) or 0)
            if int(stats.get("memory_iteration", 0) or 0) >= 1 and sent > 0:
                break
            if asyncio.get_running_loop().time() > deadline:
                break
            await self._waker.wait(0.2)
        await self._call(dom.migrateStartPostCopy, 0, what="post-copy")

    async def suspend(self, domain: str) -> None:
        dom = await self._domain(domain)
        await self._call(dom.suspend, what="suspend")

    async def tune(self, domain: str, name: str, value: int) -> None:
        dom = await self._domain(domain)
        if name == "bandwidth":
            await self._call(dom.migrateSetMaxSpeed, value, 0, what="bandwidth")
        elif name == "downtime":
            await self._call(dom.migrateSetMaxDowntime, value, 0, what="downtime")
        else:
            raise BackendError(f"{name} cannot change during migration", Reason.NoSupport)

    async def resume(self, domain: str) -> None:
        if not await self._call(domains.resume, self._conn, domain, what="resume"):
            raise BackendError(f"no domain {domain!r} on {self.host.name}", Reason.DomainNotFound)

    async def undefine(self, domain: str) -> None:
        if not await self._call(domains.undefine, self._conn, domain, what="undefine"):
            raise BackendError(f"domain {domain!r} is running; it cannot be undefined")

    async def close(self) -> None:
        def close() -> None:
            for callback in self._callbacks:
                try:
                    self._conn.domainEventDeregisterAny(callback)
                except libvirt.libvirtError:
                    pass
            self._callbacks.clear()
            try:
                self._conn.close()
            except libvirt.libvirtError:
                pass

        await asyncio.get_running_loop().run_in_executor(self._pool, close)


_CLOSE_REASONS = {0: "error", 1: "end of file", 2: "keepalive timeout", 3: "closed by client"}


def _quietly(call: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            call()
        except libvirt.libvirtError:
            pass  # the job may have ended meanwhile; the migrate call reports what happened

    return run


def _alive(conn: Any, uuid: str) -> bool:
    dom = domains.find(conn, uuid)
    return dom is not None and domains.active(dom)


def _dotted(version: int) -> str:
    return f"{version // 1_000_000}.{version // 1000 % 1000}.{version % 1000}"
