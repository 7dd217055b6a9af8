"""One small function per phase; each looks at the world, does one step, records it.

Every phase function is safe to run again after a crash: the ones before Migrating change
nothing outside the status, and Migrating decides from the hypervisors' own view whether a
migration was already started, so the migrate call is issued at most once.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from controller.api.enums import MigrationFlag, Phase, Reason
from controller.api.status import DomainState, Endpoint, timestamp
from controller.backends.base import (
    BackendError,
    Connection,
    DomainInfo,
    Driver,
    HostConfig,
    JobInfo,
    JobPhase,
    MigrationRequest,
)
from controller.backends.registry import DriverTable
from controller.engine.checks import different_drivers, unsupported_by_either
from controller.engine.contact import reconnect
from controller.engine.monitor import monitor
from controller.engine.run import Outcome, Run, ask, fail, failure


async def validate(run: Run) -> Phase:
    spec, hosts, drivers = run.spec, run.hosts, run.drivers
    assert hosts is not None and drivers is not None, "the engine hands every run its hosts and drivers"
    for field, name in (("source", spec.source), ("destination", spec.destination)):
        if hosts.find(name) is None:
            raise fail(Reason.InvalidSpec, f"spec.{field}: no host named {name!r} is known")
    run.source_host, run.dest_host = hosts.find(spec.source), hosts.find(spec.destination)
    source, dest = run.source_host, run.dest_host
    assert source is not None and dest is not None
    source_driver = _driver(drivers, source)
    problem = different_drivers(source.name, source.driver, dest.name, dest.driver)
    if problem:
        raise fail(Reason.NoSupport, problem)
    dest_driver = _driver(drivers, dest)
    run.capabilities = source_driver.capabilities
    sides = [("source", source_driver), ("destination", dest_driver)]
    found = unsupported_by_either(spec, [(side, d.name, d.capabilities) for side, d in sides])
    if found:
        raise fail(Reason.NoSupport, found[0][2])
    adopt_policy(run)
    return Phase.Preparing


def _driver(drivers: DriverTable, host: HostConfig) -> Driver:
    try:
        return drivers.get(host.driver)
    except BackendError as exc:
        raise failure(exc, "", Reason.NoSupport) from None


def adopt_policy(run: Run) -> None:
    """Take what the MigrationPolicy offers that this driver can do and the spec left open."""
    caps, policy = run.caps, run.policy
    offline = MigrationFlag.offline in run.spec.flags
    run.extra_flags = {f for f in policy.soft_flags if f in caps.flags and not offline and f not in run.spec.flags}
    if MigrationFlag.postCopy in run.extra_flags and not caps.postcopy:
        run.extra_flags.discard(MigrationFlag.postCopy)
    run.extra_params = {k: v for k, v in policy.default_params.items() if k in caps.params and k not in run.spec.params}


async def connect(run: Run, drivers: DriverTable) -> None:
    """Open both connections; a host we cannot reach is HostUnreachable, whatever the phase."""
    for which in ("source", "dest"):
        host = run.source_host if which == "source" else run.dest_host
        assert host is not None
        if getattr(run, which) is not None:
            continue
        setattr(run, which, await ask(_open(drivers, host), f"cannot connect to host {host.name}"))


async def _open(drivers: DriverTable, host: HostConfig) -> Connection:
    return await drivers.get(host.driver).connect(host)  # inside the ask: no such driver is a failure too


async def _lookup(run: Run, side: str, name: str) -> DomainInfo | None:
    conn = run.src if side == "source" else run.dst
    return await ask(conn.lookup(name), f"{side} host {conn.host.name}")


def _active(info: DomainInfo | None) -> bool:
    return info is not None and info.state in (DomainState.running, DomainState.paused)


def _arrived(run: Run, there: DomainInfo) -> Outcome:
    assert run.status.target is not None
    run.status.target.uuid = there.uuid
    return Outcome(
        Phase.Succeeded,
        Reason.AlreadyAtDestination,
        f"{there.name} is already {there.state.value} on {run.spec.destination} and not on {run.spec.source};"
        " nothing moved",
    )


def _same_domain(here: DomainInfo, there: DomainInfo) -> bool:
    return bool(here.uuid) and here.uuid.lower() == there.uuid.lower()


def _clash(run: Run, here: DomainInfo, there: DomainInfo) -> Outcome:
    other = "" if _same_domain(here, there) else f": a different domain (uuid {there.uuid}, not {here.uuid})"
    return fail(
        Reason.NameClash,
        f"a domain named {there.name} already exists on {run.spec.destination} ({there.state.value}){other};"
        " set dname to migrate under another name",
    )


def _check_live(run: Run, here: DomainInfo | None, there: DomainInfo | None) -> None:
    """A migration is a desired state: already there and gone from here is success."""
    if not _active(here):
        if there is not None and _active(there):
            raise _arrived(run, there)
        if here is not None:
            raise fail(
                Reason.InvalidSpec,
                f"domain {here.name} is {here.state.value} on {run.spec.source}: only a running domain migrates"
                " live (flags offline and persistDest move a shut-off domain's definition)",
            )
        raise fail(Reason.DomainNotFound, f"no domain {run.spec.domain} on {run.spec.source} or {run.spec.destination}")
    assert here is not None
    # A shut-off definition with our UUID is this domain's own, left by an earlier migration
    # without undefineSource: libvirt (and xend) run the incoming domain on it, so the way back works.
    if there is not None and not (there.state is DomainState.shutoff and _same_domain(here, there)):
        raise _clash(run, here, there)


def _check_offline(run: Run, here: DomainInfo | None, there: DomainInfo | None) -> None:
    if here is None:
        if there is not None:
            raise _arrived(run, there)
        raise fail(Reason.DomainNotFound, f"no domain {run.spec.domain} on {run.spec.source} or {run.spec.destination}")
    if _active(here):
        raise fail(
            Reason.InvalidSpec,
            f"domain {here.name} is {here.state.value}: an offline migration moves a shut-off domain's definition",
        )
    if there is not None:
        raise _arrived(run, there) if _same_domain(here, there) else _clash(run, here, there)


async def _no_twin(run: Run, here: DomainInfo, target_name: str) -> None:
    """One UUID is one domain: a destination that defines ours under another name refuses the
    incoming one (libvirt: "domain ... is already defined with uuid"), so say so before starting."""
    twin = await _lookup(run, "destination", here.uuid) if here.uuid else None
    if twin is None or twin.name == target_name or not _same_domain(here, twin):
        return
    shutoff = twin.state is DomainState.shutoff
    hint = f"; migrate it as {twin.name} (dname: {twin.name}) to run it on that definition" if shutoff else ""
    raise fail(
        Reason.NameClash,
        f"{run.spec.destination} already defines this domain (uuid {here.uuid}) as {twin.name}"
        f" ({twin.state.value}){hint}",
    )


async def prepare(run: Run) -> Phase:
    spec = run.spec
    offline = run.has(MigrationFlag.offline)
    here = await _lookup(run, "source", spec.domain)
    name = here.name if here else spec.domain
    target_name = spec.dname or name
    there = await _lookup(run, "destination", target_name)
    if there is None and here is None and spec.dname is None:
        there = await _lookup(run, "destination", spec.domain)  # the spec may name it by UUID
    run.status.source = Endpoint(
        host=spec.source,
        domain=name,
        uuid=here.uuid if here else None,
        state=here.state if here else DomainState.absent,
    )
    run.status.target = Endpoint(
        host=spec.destination, domain=target_name, state=there.state if there else DomainState.absent
    )
    if offline:
        _check_offline(run, here, there)
    else:
        if here is None and there is not None and there.state is DomainState.paused:
            await _not_in_flight(run)
        _check_live(run, here, there)
    assert here is not None
    if there is None:
        await _no_twin(run, here, target_name)
    run.memory_bytes = here.memory_bytes
    run.status.target.hostname = await _hostname(run)
    return Phase.Migrating


async def _not_in_flight(run: Run) -> None:
    """Paused there and gone from here may be a migration still under way (xend shows the incoming
    domain early, paused, and renames the leaving one): somebody else's, not an arrival."""
    job = await _job(run)
    if job.phase in (JobPhase.active, JobPhase.postcopy):
        raise fail(Reason.Busy, f"{run.source_name} is already being migrated away from {run.spec.source}")


async def _hostname(run: Run) -> str:
    """The 2007 proposal: use the caller's hostname, else synthesise one from the destination."""
    if run.spec.hostname:
        return run.spec.hostname
    assert run.dest_host is not None
    if run.dest_host.migration_address:
        return run.dest_host.migration_address
    return await ask(run.dst.hostname(), "cannot get the destination's host name")


def request_of(run: Run) -> MigrationRequest:
    assert run.status.target is not None and run.status.target.hostname
    return MigrationRequest(
        domain=run.source_name,
        hostname=run.status.target.hostname,
        dname=run.spec.dname,
        flags=run.flags,
        params=run.params,
    )


async def migrate(run: Run) -> Phase:
    """Start the migration unless the hypervisors show it was started, then follow it."""
    job = await _job(run)
    started = run.status.migration_start_time is not None
    if job.phase in (JobPhase.active, JobPhase.postcopy):
        if not started:
            # Our marker is saved before our call, so a job without it is somebody else's.
            raise fail(Reason.Busy, f"{run.source_name} is already being migrated away from {run.spec.source}")
    elif not started:
        await _start(run)
    elif job.phase is JobPhase.none:
        if not run.caps.job_history:
            await _decide_without_job(run)
            return Phase.Verifying
        # The driver keeps finished jobs, so no job means the call was never made.
        await _start(run)
    return await monitor(run)


async def _job(run: Run) -> JobInfo:
    return await ask(run.src.job(run.source_name), f"source host {run.spec.source}")


async def _start(run: Run) -> None:
    if run.controls.aborting:
        raise Outcome(Phase.Aborted, Reason.Aborted, "aborted before the migration started; nothing moved")
    # The marker is saved before the call: after a crash, it tells the next run to look, not to call again.
    run.status.migration_start_time = timestamp()
    await run.report()
    await ask(run.src.migrate(run.dst, request_of(run)), "the migration did not start", Reason.SourceFailed)


async def _decide_without_job(run: Run) -> None:
    """A driver with no job history: the hosts' views are all that tells what happened."""
    there = await _lookup(run, "destination", run.target_name)
    if _active(there):
        return  # paused may be an incoming domain not yet resumed: Verifying waits for it to run
    raise fail(
        Reason.SourceFailed,
        f"the migration was started before a restart and {run.spec.source} reports no job; "
        f"the domain was not found running on {run.spec.destination}",
    )


async def _patient_lookup(run: Run, side: Literal["source", "dest"], name: str, deadline: float) -> DomainInfo | None:
    """A lookup that rides out a host that briefly stops answering (a daemon restart, a blip)."""
    while True:
        conn = run.src if side == "source" else run.dst
        try:
            return await conn.lookup(name)
        except BackendError as exc:
            if exc.reason not in (None, Reason.HostUnreachable) or asyncio.get_running_loop().time() > deadline:
                raise failure(exc, f"host {conn.host.name}") from None
        await asyncio.sleep(run.policy.poll_interval)
        await reconnect(run, side)


async def verify(run: Run) -> Phase:
    """The 2007 proposal's last step: look the domain up by name on the destination."""
    want = {DomainState.running}
    if run.has(MigrationFlag.paused):
        want = {DomainState.paused}
    if run.has(MigrationFlag.offline):
        want = {DomainState.shutoff, DomainState.running, DomainState.paused}
    deadline = asyncio.get_running_loop().time() + run.policy.verify_timeout
    there = await _patient_lookup(run, "dest", run.target_name, deadline)
    while there is None or there.state not in want:
        if asyncio.get_running_loop().time() > deadline:
            state = there.state.value if there else "absent"
            raise fail(
                Reason.TargetFailed,
                f"the migration finished but {run.target_name} is {state} on {run.spec.destination}",
            )
        await asyncio.sleep(run.policy.poll_interval)
        there = await _patient_lookup(run, "dest", run.target_name, deadline)
    here = await _patient_lookup(run, "source", run.source_name, deadline)
    if (
        here is not None
        and here.state in (DomainState.running, DomainState.paused)
        and not run.has(MigrationFlag.offline)
    ):
        raise fail(Reason.SourceFailed, f"{run.source_name} still runs on {run.spec.source} after the migration")
    if here is not None and run.has(MigrationFlag.undefineSource):
        try:
            await run.src.undefine(run.source_name)
        except BackendError as exc:
            # The domain has moved: whatever the source says, what failed is its clean-up there.
            raise fail(
                Reason.SourceFailed, f"migrated, but undefining {run.source_name} on the source failed: {exc}"
            ) from None
        here = None
    assert run.status.target is not None and run.status.source is not None
    run.status.target.state, run.status.target.uuid = there.state, there.uuid
    run.status.source.state = here.state if here else DomainState.absent
    where = f"{run.target_name} runs on {run.spec.destination}"
    raise Outcome(Phase.Succeeded, Reason.Completed, f"migrated: {where}")
