"""The `test` driver: libvirt's test:///default in spirit, with a migration model."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from controller.api.enums import MigrationFlag, Reason
from controller.api.params import SHARED_PARAMS
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
from controller.backends.test.declaration import DECLARATION
from controller.backends.test.model import MiB, Plan
from controller.backends.test.options import DEFAULT_HOST_CPUS, DEFAULT_HOST_MEMORY_MIB
from controller.backends.test.world import (
    State,
    World,
    add_job,
    domain_record,
    job_key,
    memory_bytes,
    open_jobs,
    plan_of,
    snapshot_of,
    store_plan,
)

CAPABILITIES = Capabilities(
    flags=frozenset(MigrationFlag),
    params=frozenset(SHARED_PARAMS),
    rename=True,
    localhost=True,
    progress=True,
    abort=True,
    postcopy=True,
    suspend=True,
    job_history=True,
    live_tuning=frozenset({"bandwidth", "downtime"}),
    capacity=True,
    cpu_compare=True,
)

ACTIVE_STATES = ("running", "paused")  # a domain in these holds its memory


def _loop_clock() -> float:
    return asyncio.get_running_loop().time()


class TestDriver(Driver):
    __test__ = False  # not a pytest class
    name = DECLARATION.name
    capabilities = CAPABILITIES

    def __init__(self) -> None:
        self._worlds: dict[str, World] = {}

    def world(self, uri: str) -> World:
        parsed = urlparse(uri)
        if parsed.scheme not in DECLARATION.uri_schemes:
            raise BackendError(f"not a test driver URI: {uri!r}", Reason.InvalidSpec)
        path = parsed.path
        if path not in self._worlds:
            if path in ("", "/", "/default"):
                # In memory, on the event loop's clock, so looptime fast-forwards it.
                self._worlds[path] = World(None, _loop_clock)
            else:
                self._worlds[path] = World(Path(path))
        return self._worlds[path]

    async def connect(self, host: HostConfig) -> Connection:
        world = self.world(host.uri)
        options: dict[str, Any] = dict(host.options)
        with world.txn() as state:
            if host.name not in state["hosts"]:
                state["hosts"][host.name] = {
                    "hostname": options.get("hostname") or host.name,
                    "linkMiBps": float(options.get("linkMiBps", 1000.0)),
                    "memoryMiB": int(options.get("memoryMiB", DEFAULT_HOST_MEMORY_MIB)),
                    "cpus": int(options.get("cpus", DEFAULT_HOST_CPUS)),
                    "cpuModel": options.get("cpuModel"),
                    "faults": dict(options.get("faults") or {}),
                    "domains": {d["name"]: domain_record(d) for d in options.get("domains", [])},
                }
            if state["hosts"][host.name]["faults"].get("unreachable"):
                raise BackendError(f"cannot connect to {host.name} ({host.uri})", Reason.HostUnreachable)
        return TestConnection(world, host)


def _clash(record: dict[str, Any], domains: dict[str, Any], target: str) -> str | None:
    """What libvirt's virDomainObjListAdd refuses: the name held by another UUID, our UUID under
    another name, or our own domain already active. Our own shut-off definition takes the
    incoming domain (a migration back to where it was defined)."""
    existing = domains.get(target)
    if existing is not None:
        if existing["uuid"] != record["uuid"]:
            return f"domain {target!r} already exists with uuid {existing['uuid']}"
        if existing["state"] != "shutoff":
            return f"domain {target!r} is already active"
        return None
    for other in domains.values():
        if other["uuid"] == record["uuid"]:
            return f"domain {other['name']!r} is already defined with uuid {record['uuid']}"
    return None


def _cpu_refusal(guest_cpu: str | None, host: dict[str, Any], name: str) -> str | None:
    """Why the host cannot run a guest with that CPU model: a named model runs only on a host of
    that model; a guest or host that names none runs anywhere."""
    model = host.get("cpuModel")
    if guest_cpu is None or model is None or guest_cpu == model:
        return None
    return f"{name}'s CPU is {model}, the guest's is {guest_cpu}"


def _info(record: dict[str, Any], state: str | None = None) -> DomainInfo:
    return DomainInfo(
        name=record["name"],
        uuid=record["uuid"],
        state=DomainState(state or record["state"]),
        memory_bytes=memory_bytes(record),
        persistent=record["persistent"],
    )


class TestConnection(Connection):
    __test__ = False

    def __init__(self, world: World, host: HostConfig) -> None:
        self.world = world
        self.host = host

    def _host(self, state: State) -> dict[str, Any]:
        host: dict[str, Any] = state["hosts"][self.host.name]
        if host["faults"].get("unreachable"):
            raise BackendError(f"lost connection to {self.host.name}", Reason.HostUnreachable)
        return host

    def _view(self, state: State) -> list[DomainInfo]:
        """Domains as a hypervisor would list them now, in-flight jobs included."""
        now = self.world.clock()
        seen: dict[str, DomainInfo] = {}
        for record in self._host(state)["domains"].values():
            job = state["jobs"].get(job_key(self.host.name, record["name"]))
            shown = record["state"]
            if job and not job.get("settled"):
                snap = snapshot_of(job, now)
                if snap.postcopy or snap.paused:  # run elsewhere, or stopped for the switch-over
                    shown = "paused"
            seen[record["name"]] = _info(record, shown)
        for key in open_jobs(state):
            job = state["jobs"][key]
            if job["destination"] == self.host.name and not job.get("settled"):
                # Incoming domains stay hidden until success, except once post-copy runs them here
                # (on our own shut-off definition, if the domain had one here), paused there if
                # it was paused before the switch.
                snap = snapshot_of(job, now)
                if snap.postcopy:
                    source = state["hosts"][job["source"]]["domains"].get(job["domain"])
                    if source:
                        shown = "paused" if snap.paused else "running"
                        seen[job["target"]] = _info(dict(source, name=job["target"]), shown)
        return list(seen.values())

    async def hostname(self) -> str:
        with self.world.txn() as state:
            return str(self._host(state)["hostname"])

    async def version(self) -> str:
        return "domig-test 1.0"

    async def list_domains(self) -> list[DomainInfo]:
        with self.world.txn() as state:
            return self._view(state)

    async def lookup(self, name_or_uuid: str) -> DomainInfo | None:
        for info in await self.list_domains():
            if name_or_uuid in (info.name, info.uuid):
                return info
        return None

    async def capacity(self) -> HostCapacity:
        """The host's size as its spec says; what its active domains hold is taken. An incoming
        domain counts once it has arrived, as the source's counts until then."""
        with self.world.txn() as state:
            host = self._host(state)
            active = [d for d in host["domains"].values() if d["state"] in ACTIVE_STATES]
            total = int(host.get("memoryMiB", DEFAULT_HOST_MEMORY_MIB)) * MiB
            return HostCapacity(
                memory_total_bytes=total,
                memory_free_bytes=max(0, total - sum(memory_bytes(d) for d in active)),
                cpus=int(host.get("cpus", DEFAULT_HOST_CPUS)),
                cpu_model=host.get("cpuModel"),
                running_domains=len(active),
            )

    async def guest_cpu(self, domain: str) -> str | None:
        with self.world.txn() as state:
            record = self._host(state)["domains"].get(domain)
            if record is None:
                raise BackendError(f"no domain {domain!r} on {self.host.name}", Reason.DomainNotFound)
            model: str | None = record.get("cpuModel")
            return model

    async def cpu_fits(self, guest_cpu: str) -> tuple[bool, str] | None:
        with self.world.txn() as state:
            host = self._host(state)
            refusal = _cpu_refusal(guest_cpu, host, self.host.name)
            if refusal is not None:
                return False, refusal
            model = host.get("cpuModel")
            return True, f"{self.host.name}'s CPU is {model}" if model else f"{self.host.name} runs any CPU model"

    async def migrate(self, destination: Connection, request: MigrationRequest) -> None:
        if not isinstance(destination, TestConnection) or destination.world is not self.world:
            raise BackendError("the test driver migrates only within one test world", Reason.NoSupport)
        flags = request.flags
        with self.world.txn() as state:
            state["migrateCalls"] = state.get("migrateCalls", 0) + 1
            source = self._host(state)
            target = destination._host(state)
            if request.hostname not in (target["hostname"], destination.host.name, destination.host.migration_address):
                raise BackendError(f"cannot connect to migration address {request.hostname!r}", Reason.HostUnreachable)
            record = source["domains"].get(request.domain)
            if record is None:
                raise BackendError(f"no domain {request.domain!r} on {self.host.name}", Reason.DomainNotFound)
            key = job_key(self.host.name, request.domain)
            running = state["jobs"].get(key)
            if running and not running.get("settled"):
                raise BackendError(f"domain {request.domain!r} is already migrating", Reason.Busy)
            offline = MigrationFlag.offline in flags
            if not offline and record["state"] not in ("running", "paused"):
                raise BackendError(f"domain {request.domain!r} is not running", Reason.InvalidSpec)
            clash = _clash(record, target["domains"], request.target_name)
            if clash:
                raise BackendError(f"{clash} on {destination.host.name}", Reason.NameClash)
            cpu = _cpu_refusal(record.get("cpuModel"), target, destination.host.name)
            if cpu is not None:
                # As libvirt's Prepare refuses it on the destination: the guest never left.
                raise BackendError(f"the guest CPU is incompatible with the host CPU: {cpu}", Reason.TargetFailed)
            params = request.params
            now = self.world.clock()
            link = min(float(source["linkMiBps"]), float(target["linkMiBps"])) * MiB
            initial = int(params.get("auto_converge.initial", 20))
            increment = int(params.get("auto_converge.increment", 10))
            plan = Plan(
                start=now,
                memory=memory_bytes(record),
                dirty_bps=float(record["dirtyRateMiBps"]) * MiB,
                link_bps=link,
                live=MigrationFlag.live in flags and record["state"] == "running",
                offline=offline,
                bandwidth=[(now, float(params.get("bandwidth", 0)) * MiB)],
                downtime=[(now, int(params["downtime"]) / 1000.0)] if "downtime" in params else [],
                postcopy_bps=float(params["bandwidth.postcopy"]) * MiB if params.get("bandwidth.postcopy") else None,
                auto_converge=(initial / 100, increment / 100) if MigrationFlag.autoConverge in flags else None,
            )
            faults = target["faults"].get("destinationDiesAt"), source["faults"].get("sourceDiesAt")
            if faults[0] is not None:
                plan.fail_at, plan.fail_side = float(faults[0]), "destination"
            elif faults[1] is not None:
                plan.fail_at, plan.fail_side = float(faults[1]), "source"
            job: dict[str, Any] = {
                "source": self.host.name,
                "destination": destination.host.name,
                "domain": request.domain,
                "target": request.target_name,
                "flags": sorted(flags),
                "offline": offline,
                "stateBefore": record["state"],
            }
            store_plan(job, plan)
            add_job(state, key, job)
            if not plan.live and not offline:
                record["state"] = "paused"  # a non-live migration stops the guest first

    def _job(self, state: State, domain: str) -> dict[str, Any] | None:
        self._host(state)
        job: dict[str, Any] | None = state["jobs"].get(job_key(self.host.name, domain))
        return job

    async def job(self, domain: str) -> JobInfo:
        with self.world.txn() as state:
            job = self._job(state, domain)
            if job is None:
                return NO_JOB
            now = self.world.clock()
            snap = snapshot_of(job, now)
            phase = {
                "active": JobPhase.active,
                "postcopy": JobPhase.postcopy,
                "completed": JobPhase.completed,
                "failed": JobPhase.failed,
                "cancelled": JobPhase.cancelled,
            }[snap.outcome]
            until = now if phase in (JobPhase.active, JobPhase.postcopy) else snap.time
            return JobInfo(
                phase=phase,
                data_total=snap.total,
                data_processed=snap.processed,
                data_remaining=snap.remaining,
                bytes_per_second=int(snap.bps),
                dirty_rate=int(snap.dirty_bps),
                iteration=snap.iteration,
                downtime_ms=snap.downtime_ms,
                elapsed_ms=int((until - plan_of(job).start) * 1000),
                error=job.get("error"),
                failed_side=snap.failed_side,
                postcopy=snap.postcopy,
            )

    async def abort(self, domain: str) -> None:
        with self.world.txn() as state:
            job, plan, now = self._active(state, domain)
            if snapshot_of(job, now).postcopy:
                raise BackendError("cannot abort migration in post-copy mode")
            plan.aborted_at = now
            store_plan(job, plan)

    async def start_postcopy(self, domain: str) -> None:
        with self.world.txn() as state:
            job, plan, now = self._active(state, domain)
            if "postCopy" not in job["flags"]:
                raise BackendError("post-copy was not enabled for this migration (flag postCopy)")
            if plan.postcopy_at is None:
                plan.postcopy_at = now
                store_plan(job, plan)

    async def suspend(self, domain: str) -> None:
        with self.world.txn() as state:
            job, plan, now = self._active(state, domain)
            if plan.suspended_at is None:
                plan.suspended_at = now
                store_plan(job, plan)
                self._host(state)["domains"][domain]["state"] = "paused"

    async def tune(self, domain: str, name: str, value: int) -> None:
        with self.world.txn() as state:
            job, plan, now = self._active(state, domain)
            if name == "bandwidth":
                plan.bandwidth.append((now, float(value) * MiB))
            elif name == "downtime":
                plan.downtime.append((now, value / 1000.0))
            else:
                raise BackendError(f"{name} cannot change during migration", Reason.NoSupport)
            store_plan(job, plan)

    def _active(self, state: State, domain: str) -> tuple[dict[str, Any], Plan, float]:
        job = self._job(state, domain)
        if job is None or job.get("settled"):
            raise BackendError(f"domain {domain!r} has no migration running")
        return job, plan_of(job), self.world.clock()

    async def resume(self, domain: str) -> None:
        with self.world.txn() as state:
            record = self._host(state)["domains"].get(domain)
            if record is None:
                raise BackendError(f"no domain {domain!r} on {self.host.name}", Reason.DomainNotFound)
            if record["state"] == "paused":
                record["state"] = "running"

    async def undefine(self, domain: str) -> None:
        with self.world.txn() as state:
            domains = self._host(state)["domains"]
            record = domains.get(domain)
            if record is not None and record["state"] in ("running", "paused"):
                raise BackendError(f"domain {domain!r} is running; it cannot be undefined")
            domains.pop(domain, None)
