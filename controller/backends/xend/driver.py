"""The xend driver: Xen's HTTP API, as libvirt's 2007 xenDaemonDomainMigrate used it.

xend's ``op=migrate`` answers only when the migration is over, so the POST runs in a task the
driver holds, and ``migrate()`` returns once xend shows the migration under way. xend reports
no progress and keeps no record of finished migrations; what a process that did not send the
POST can know comes from the hosts' views: ``migrating-<name>`` on the source means in flight.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from controller.api.enums import MigrationFlag, Reason
from controller.api.spec import Side
from controller.api.status import DomainState
from controller.backends.protocol import (
    NO_JOB,
    BackendError,
    Capabilities,
    Connection,
    DomainInfo,
    Driver,
    HostCapacity,
    HostConfig,
    JobInfo,
    JobPhase,
    MigrationRequest,
)
from controller.backends.xend import sxp
from controller.backends.xend.declaration import DECLARATION
from controller.backends.xend.transport import (
    ConnectionLost,
    Endpoint,
    XendClient,
    XendSaidNo,
    check,
    domain_path,
    parse_uri,
)

FLAGS = frozenset({MigrationFlag.live, MigrationFlag.undefineSource})
PARAMS = frozenset(DECLARATION.params)

CAPABILITIES = Capabilities(
    flags=FLAGS,
    params=PARAMS,
    rename=False,
    localhost=False,
    progress=False,
    abort=False,
    postcopy=False,
    suspend=False,
    job_history=False,
    capacity=True,
)

# xend renames the source's domain while it streams it (XendCheckpoint), so that a
# migration to the same host has no name clash; tools of the time looked for this name.
MIGRATING_PREFIX = "migrating-"
MiB = 1024 * 1024
START_POLL = 0.05
START_WAIT = 10.0

JobKey = tuple[tuple[str, str | None], str]


def _now() -> float:
    return asyncio.get_running_loop().time()


@dataclass
class MigrateJob:
    """One op=migrate POST in flight (or answered) in this process."""

    task: asyncio.Task[None]
    started: float
    ended: float | None = None

    def finished(self, task: asyncio.Task[None]) -> None:
        self.ended = _now()
        if not task.cancelled():
            task.exception()  # retrieved here: job() reads it later, or nobody does

    @property
    def refused(self) -> XendSaidNo | None:
        """xend's own error answer, if that is how the POST ended."""
        if not self.task.done() or self.task.cancelled():
            return None
        exc = self.task.exception()
        return exc if isinstance(exc, XendSaidNo) else None

    @property
    def answered(self) -> bool:
        """xend answered the POST (success or its error), so its outcome is known."""
        if not self.task.done() or self.task.cancelled():
            return False
        exc = self.task.exception()
        return exc is None or isinstance(exc, XendSaidNo)

    def elapsed_ms(self) -> int:
        return int(((self.ended if self.ended is not None else _now()) - self.started) * 1000)


def state_of(flags: str) -> DomainState:
    """xend's six positional flags ``rbpscd``; a halted (managed) domain shows none."""
    shown = {letter for letter, at in zip("rbpscd", flags, strict=False) if at == letter}
    if "c" in shown:
        return DomainState.crashed
    if shown & {"s", "d"}:
        return DomainState.shutoff
    if "p" in shown:
        return DomainState.paused
    if shown & {"r", "b"}:
        return DomainState.running
    return DomainState.shutoff


def domain_info(record: sxp.Sxp) -> DomainInfo | None:
    values = sxp.fields(record)
    if sxp.head(record) != "domain" or "name" not in values:
        return None
    try:
        memory = int(float(values.get("memory", "0")) * MiB)
    except ValueError:
        memory = 0
    return DomainInfo(
        name=values["name"],
        uuid=values.get("uuid", ""),
        state=state_of(values.get("state", "")),
        memory_bytes=memory,
        # xend says "managed" only by keeping a halted domain (no domid); a running
        # domain's record does not tell, and xm-created domains were not managed.
        persistent="domid" not in values,
        guest=values.get("domid") != "0",
    )


ACTIVE_STATES = (DomainState.running, DomainState.paused)


def _count(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _mib(value: str | None) -> int | None:
    count = _count(value)
    return count * MiB if count is not None else None


def failed_side(message: str) -> Side | None:
    """Which host failed, when xend's message says so."""
    lowered = message.lower()
    if "can't connect" in lowered or "refused by" in lowered or "not enough memory" in lowered:
        return "destination"
    if any(
        text in lowered
        for text in ("domain is not running", "privileged domain", "already being migrated", "invalid domain")
    ):
        return "source"
    return None


def refusal(request: MigrationRequest) -> str | None:
    """What the 2007 driver refused itself; the engine refuses the same from CAPABILITIES first."""
    if request.dname and request.dname != request.domain:
        return "Xen does not support renaming domains during migration"
    for flag in sorted(request.flags - FLAGS):
        return f"xend: unsupported flag {flag.value}"
    for name in sorted(set(request.params) - PARAMS):
        return f"xend: unsupported parameter {name}"
    return None


class XendDriver(Driver):
    name = DECLARATION.name
    capabilities = CAPABILITIES

    def __init__(self) -> None:
        self._clients: dict[Endpoint, XendClient] = {}
        self._jobs: dict[JobKey, MigrateJob] = {}

    def client(self, endpoint: Endpoint) -> XendClient:
        if endpoint not in self._clients:
            self._clients[endpoint] = XendClient(endpoint)
        return self._clients[endpoint]

    async def connect(self, host: HostConfig) -> Connection:
        endpoint = parse_uri(host.uri, host.credentials)
        conn = XendConnection(self, self.client(endpoint), host)
        await conn.node()  # an unreachable xend is found now, not at the first lookup
        return conn

    def job_of(self, key: JobKey) -> MigrateJob | None:
        return self._jobs.get(key)

    def add_job(self, key: JobKey, job: MigrateJob) -> None:
        self._jobs[key] = job

    async def close(self) -> None:
        """Drop every open request. xend finishes a migration whose client went away."""
        tasks = [job.task for job in self._jobs.values() if not job.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._jobs.clear()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


class XendConnection(Connection):
    def __init__(self, driver: XendDriver, client: XendClient, host: HostConfig) -> None:
        self.driver = driver
        self.client = client
        self.host = host

    @property
    def _where(self) -> str:
        return f"xend on {self.host.name} ({self.client.endpoint.shown})"

    async def node(self) -> dict[str, str]:
        status, body = await self.client.get("/xend/node", detail=False)
        check(status, body, self._where)
        for value in self._parse(body):
            if sxp.head(value) == "node":
                return sxp.fields(value)
        raise BackendError(f"{self._where} sent no (node ...) record")

    def _parse(self, body: str) -> list[sxp.Sxp]:
        try:
            return sxp.parse(body)
        except sxp.SxpError as exc:
            raise BackendError(f"{self._where} sent an unreadable reply: {exc}") from None

    async def hostname(self) -> str:
        host = (await self.node()).get("host")
        if not host:
            raise BackendError(f"{self._where} does not say its host name")
        return host

    async def version(self) -> str:
        node = await self.node()
        return f"xen {node.get('xen_major', '?')}.{node.get('xen_minor', '?')}{node.get('xen_extra', '')}"

    async def _records(self) -> list[sxp.Sxp]:
        status, body = await self.client.get("/xend/domain/")
        check(status, body, self._where)
        found: list[sxp.Sxp] = []
        for value in self._parse(body):
            # One (domain ...) per domain, or all of them in one list: both were seen.
            found.extend([value] if sxp.head(value) == "domain" else value if isinstance(value, list) else [])
        return found

    async def list_domains(self) -> list[DomainInfo]:
        return [info for record in await self._records() if (info := domain_info(record)) is not None]

    async def capacity(self) -> HostCapacity:
        """xend's node record: memory in MiB (free is Xen's: what no domain holds, Domain-0
        included), the CPU count. It names no CPU model: its ``machine`` is the architecture and
        ``hw_caps`` CPUID's feature words; the model's name was only in XenAPI's host_cpu."""
        node = await self.node()
        running = 0
        for record in await self._records():
            values, info = sxp.fields(record), domain_info(record)
            # Domain-0 is the host's own; a halted (managed) domain has no domid.
            if info is not None and values.get("domid") not in (None, "0") and info.state in ACTIVE_STATES:
                running += 1
        return HostCapacity(
            memory_total_bytes=_mib(node.get("total_memory")),
            memory_free_bytes=_mib(node.get("free_memory")),
            cpus=_count(node.get("nr_cpus")),
            cpu_model=None,
            running_domains=running,
        )

    async def _record(self, key: str) -> DomainInfo | None:
        status, body = await self.client.get(domain_path(key))
        if status == 404:
            return None
        check(status, body, self._where)
        for value in self._parse(body):
            info = domain_info(value)
            if info is not None:
                return info
        raise BackendError(f"{self._where} sent no (domain ...) record for {key}")

    async def lookup(self, name_or_uuid: str) -> DomainInfo | None:
        info = await self._record(name_or_uuid)
        if info is None:
            return None
        if info.name == name_or_uuid:
            return info
        if info.uuid.lower() != name_or_uuid.lower() or info.name.startswith(MIGRATING_PREFIX):
            # xend also matches domids; and a domain leaving (renamed migrating-<name>) is not here as itself.
            return None
        return info

    def _key(self, domain: str) -> JobKey:
        return self.client.endpoint.key, domain

    async def migrate(self, destination: Connection, request: MigrationRequest) -> None:
        problem = refusal(request)
        if problem:
            raise BackendError(problem, Reason.NoSupport)
        key = self._key(request.domain)
        running = self.driver.job_of(key)
        if running is not None and not running.task.done():
            raise BackendError(f"{request.domain} is already being migrated from {self.host.name}", Reason.Busy)
        form = {
            "op": "migrate",
            "destination": request.hostname,
            "live": "1" if MigrationFlag.live in request.flags else "0",
            "port": str(int(request.params.get("xen.port", 0))),  # 0: the destination's relocation port
            "resource": str(int(request.params.get("xen.resource", 0))),  # Mbit/s; 0: no cap
            # Later xends name these and refuse a request without them; earlier ones ignore them.
            "node": "-1",
            "ssl": "0",
            "change_home_server": "0",
        }
        task = asyncio.create_task(self._post_migrate(request.domain, form), name=f"xend migrate {request.domain}")
        job = MigrateJob(task, _now())
        task.add_done_callback(job.finished)
        self.driver.add_job(key, job)
        await self._started(job, request.domain)

    async def _post_migrate(self, domain: str, form: dict[str, str]) -> None:
        status, body = await self.client.post(domain_path(domain), form, wait=True)
        check(status, body, self._where, missing=f"no domain {domain} on {self.host.name}")

    async def _started(self, job: MigrateJob, domain: str) -> None:
        """Return once xend shows the migration (so another process would see it too), or it ended.

        xend renames the domain once the destination has accepted the stream; a refusal comes
        back as the POST's answer before that.
        """
        deadline = _now() + START_WAIT
        while True:
            if job.task.done():
                refused = job.refused
                if refused is not None:
                    side = failed_side(refused.xend_message)
                    reason = refused.reason or (Reason.TargetFailed if side == "destination" else None)
                    raise BackendError(refused.message, reason)
                exc = None if job.task.cancelled() else job.task.exception()
                if isinstance(exc, BackendError) and not isinstance(exc, ConnectionLost):
                    raise BackendError(exc.message, exc.reason)  # never reached xend: nothing started
                return  # answered, or lost after sending: job() and the hosts' views tell
            try:
                if await self._holds(MIGRATING_PREFIX + domain):
                    return
            except BackendError:
                pass  # the POST's own outcome will say what happened
            if _now() >= deadline:
                return
            await asyncio.wait([job.task], timeout=START_POLL)

    async def _holds(self, name: str) -> bool:
        info = await self._record(name)
        return info is not None and info.name == name

    async def job(self, domain: str) -> JobInfo:
        job = self.driver.job_of(self._key(domain))
        if job is not None:
            if not job.task.done():
                return JobInfo(JobPhase.active, elapsed_ms=job.elapsed_ms())
            if job.answered:
                refused = job.refused
                if refused is None:
                    return JobInfo(JobPhase.completed, elapsed_ms=job.elapsed_ms())
                return JobInfo(
                    JobPhase.failed,
                    elapsed_ms=job.elapsed_ms(),
                    error=refused.xend_message,
                    failed_side=failed_side(refused.xend_message),
                )
        # Started elsewhere, or its answer was lost: xend's own view is all there is.
        if await self._holds(MIGRATING_PREFIX + domain):
            return JobInfo(JobPhase.active)
        return NO_JOB

    async def _op(self, domain: str, op: str) -> None:
        status, body = await self.client.post(domain_path(domain), {"op": op})
        check(status, body, f"{self._where}: {op} {domain}", missing=f"no domain {domain} on {self.host.name}")

    async def resume(self, domain: str) -> None:
        await self._op(domain, "unpause")

    async def undefine(self, domain: str) -> None:
        """op=delete, as libvirt's driver later did for UNDEFINE_SOURCE; gone already is fine."""
        try:
            await self._op(domain, "delete")
        except BackendError as exc:
            if exc.reason is not Reason.DomainNotFound:
                raise
