"""One small function per phase; each looks at the world, does one step, records it.

Every phase function is safe to run again after a crash: the ones before Migrating change
nothing outside the status, and Migrating decides from the hypervisors' own view whether a
migration was already started, so the migrate call is issued at most once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from controller.api.enums import MigrationFlag, Phase, Reason
from controller.api.permissions import forbidden_by
from controller.api.spec import SIDES, Side
from controller.api.status import DomainState, Endpoint, timestamp
from controller.backends.protocol import (
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
from controller.engine.checks import different_drivers, limitations, unsupported_by_either
from controller.engine.contact import reconnect
from controller.engine.monitor import monitor
from controller.engine.run import Outcome, Run, ask, fail, failure
from controller.engine.schedule import flags_for, schedule_for


@contextlib.contextmanager
def check(run: Run, name: str, passed: str = "") -> Iterator[None]:
    """A pre-flight check: what it found goes in status.preflight, and a failure still ends the run."""
    try:
        yield
    except Outcome as found:
        if found.phase is Phase.Succeeded:  # nothing to do is not a failed check
            run.checked(name, message=found.message)
        else:
            run.checked(name, found)
        raise
    run.checked(name, message=passed)


async def validate(run: Run) -> Phase:
    spec, hosts, drivers = run.spec, run.hosts, run.drivers
    assert hosts is not None and drivers is not None, "the engine hands every run its hosts and drivers"
    if spec.destination is None:
        raise fail(Reason.InvalidSpec, "spec.destination: no host chosen (the operator and --hosts choose one)")
    for field, name in (("source", spec.source), ("destination", spec.destination)):
        if hosts.find(name) is None:
            raise fail(Reason.InvalidSpec, f"spec.{field}: no host named {name!r} is known")
    for side in SIDES:
        found_host = hosts.find(getattr(spec, side) or "")
        assert found_host is not None
        run.hosts_of[side] = found_host
    source, destination = run.host("source"), run.host("destination")
    with check(run, "Supported", f"both {source.driver} drivers can do what the spec asks"):
        source_driver = _driver(drivers, source)
        problem = different_drivers(source.name, source.driver, destination.name, destination.driver)
        if problem:
            raise fail(Reason.NoSupport, problem)
        destination_driver = _driver(drivers, destination)
        run.capabilities = source_driver.capabilities
        sides = [("source", source_driver), ("destination", destination_driver)]
        found = unsupported_by_either(spec, [(side, d.name, d.capabilities) for side, d in sides])
        if found:
            raise fail(Reason.NoSupport, found[0][2])
    policy = run.policy.migration_policy
    with check(run, "PolicyAllows", f"MigrationPolicy {run.policy.policy_name}" if policy else "no policy applies"):
        forbidden = forbidden_by(run.policy.policy_name or "", policy, spec) if policy is not None else []
        if forbidden:
            raise fail(Reason.PolicyForbids, "; ".join(f"spec.{field}: {why}" for field, why in forbidden))
    take_policy_defaults(run)
    offline = MigrationFlag.offline in spec.flags
    run.schedule = schedule_for(spec.convergence, run.policy, run.caps, source.driver, offline)
    run.extra_flags |= flags_for(run.schedule, run.caps) - set(spec.flags)
    run.status.schedule = run.schedule.origin if run.schedule else None
    run.status.limitations = limitations(source.driver, run.caps)
    return Phase.Preparing


def _driver(drivers: DriverTable, host: HostConfig) -> Driver:
    try:
        return drivers.get(host.driver)
    except BackendError as exc:
        raise failure(exc, "", Reason.NoSupport) from None


def take_policy_defaults(run: Run) -> None:
    """Take what the MigrationPolicy offers that this driver can do and the spec left open."""
    caps, policy = run.caps, run.policy
    offline = MigrationFlag.offline in run.spec.flags
    run.extra_flags = {f for f in policy.soft_flags if f in caps.flags and not offline and f not in run.spec.flags}
    if MigrationFlag.postCopy in run.extra_flags and not caps.postcopy:
        run.extra_flags.discard(MigrationFlag.postCopy)
    run.extra_params = {k: v for k, v in policy.default_params.items() if k in caps.params and k not in run.spec.params}


async def connect(run: Run, drivers: DriverTable) -> None:
    """Open both connections; a host we cannot reach is HostUnreachable, whatever the phase."""
    before = run.status.phase is Phase.Preparing  # a pre-flight check then; later, only a failure
    with check(run, "HostsReachable", "both hosts answer") if before else contextlib.nullcontext():
        for side in SIDES:
            host = run.host(side)
            if side not in run.connections:
                run.connections[side] = await ask(_open(drivers, host), f"cannot connect to host {host.name}")


async def _open(drivers: DriverTable, host: HostConfig) -> Connection:
    return await drivers.get(host.driver).connect(host)  # inside the ask: no such driver is a failure too


async def _lookup(run: Run, side: Side, name: str) -> DomainInfo | None:
    conn = run.connection(side)
    return await ask(conn.lookup(name), f"{side} host {conn.host.name}")


def _active(info: DomainInfo | None) -> bool:
    return info is not None and info.state in (DomainState.running, DomainState.paused)


def _arrived(run: Run, at_destination: DomainInfo) -> Outcome:
    assert run.status.target is not None
    run.status.target.uuid = at_destination.uuid
    return Outcome(
        Phase.Succeeded,
        Reason.AlreadyAtDestination,
        f"{at_destination.name} is already {at_destination.state.value} on {run.spec.destination}"
        f" and not on {run.spec.source};"
        " nothing moved",
    )


def _same_domain(at_source: DomainInfo, at_destination: DomainInfo) -> bool:
    return bool(at_source.uuid) and at_source.uuid.lower() == at_destination.uuid.lower()


def _clash(run: Run, at_source: DomainInfo, at_destination: DomainInfo) -> Outcome:
    other = (
        ""
        if _same_domain(at_source, at_destination)
        else f": a different domain (uuid {at_destination.uuid}, not {at_source.uuid})"
    )
    return fail(
        Reason.NameClash,
        f"a domain named {at_destination.name} already exists on {run.spec.destination}"
        f" ({at_destination.state.value}){other};"
        " set dname to migrate under another name",
    )


def _check_live(run: Run, at_source: DomainInfo | None, at_destination: DomainInfo | None) -> None:
    """A migration is a desired state: already at the destination and gone from the source is success."""
    if not _active(at_source):
        if at_destination is not None and _active(at_destination):
            raise _arrived(run, at_destination)
        if at_source is not None:
            raise fail(
                Reason.InvalidSpec,
                f"domain {at_source.name} is {at_source.state.value} on {run.spec.source}:"
                " only a running domain migrates"
                " live (flags offline and persistDest move a shut-off domain's definition)",
            )
        raise fail(Reason.DomainNotFound, f"no domain {run.spec.domain} on {run.spec.source} or {run.spec.destination}")
    assert at_source is not None
    # A shut-off definition with our UUID is this domain's own, left by an earlier migration
    # without undefineSource: libvirt (and xend) run the incoming domain on it, so the way back works.
    if at_destination is not None and not (
        at_destination.state is DomainState.shutoff and _same_domain(at_source, at_destination)
    ):
        raise _clash(run, at_source, at_destination)


def _check_offline(run: Run, at_source: DomainInfo | None, at_destination: DomainInfo | None) -> None:
    if at_source is None:
        if at_destination is not None:
            raise _arrived(run, at_destination)
        raise fail(Reason.DomainNotFound, f"no domain {run.spec.domain} on {run.spec.source} or {run.spec.destination}")
    if _active(at_source):
        raise fail(
            Reason.InvalidSpec,
            f"domain {at_source.name} is {at_source.state.value}:"
            " an offline migration moves a shut-off domain's definition",
        )
    if at_destination is not None:
        raise (
            _arrived(run, at_destination)
            if _same_domain(at_source, at_destination)
            else _clash(run, at_source, at_destination)
        )


async def _no_twin(run: Run, at_source: DomainInfo, target_name: str) -> None:
    """One UUID is one domain: a destination that defines ours under another name refuses the
    incoming one (libvirt: "domain ... is already defined with uuid"), so say so before starting."""
    twin = await _lookup(run, "destination", at_source.uuid) if at_source.uuid else None
    if twin is None or twin.name == target_name or not _same_domain(at_source, twin):
        return
    shutoff = twin.state is DomainState.shutoff
    hint = f"; migrate it as {twin.name} (dname: {twin.name}) to run it on that definition" if shutoff else ""
    raise fail(
        Reason.NameClash,
        f"{run.spec.destination} already defines this domain (uuid {at_source.uuid}) as {twin.name}"
        f" ({twin.state.value}){hint}",
    )


async def prepare(run: Run) -> Phase:
    spec = run.spec
    offline = run.has(MigrationFlag.offline)
    with check(run, "Domain", "it runs on the source, and its name is free at the destination"):
        at_source, at_destination = await _look_up_both(run, offline)
    assert at_source is not None
    with check(run, "NameFree", "the destination defines this domain under no other name"):
        if at_destination is None:
            await _no_twin(run, at_source, run.target_name)
    run.memory_bytes = at_source.memory_bytes
    if not offline:
        await _memory_fits(run, at_source)
        await _cpu_fits(run)
    assert run.status.target is not None, "_look_up_both() records both ends"
    run.status.target.hostname = await _hostname(run)
    if spec.dry_run:
        passed = ", ".join(c.name for c in run.status.preflight)
        raise Outcome(Phase.Succeeded, Reason.DryRun, f"dry run: would succeed ({passed} passed); nothing moved")
    if run.status.migration_start_time is None and not run.controls.aborting:
        # A job found now is somebody else's; with none, the marker goes with the Migrating
        # transition, one write instead of two before the call (`migrate` makes it at once).
        await _not_in_flight(run)
        _mark(run)
    return Phase.Migrating


def _mib(value: int) -> str:
    return f"{value / 1024**2:.0f} MiB"


async def _memory_fits(run: Run, at_source: DomainInfo) -> None:
    """The guest's memory against what the destination has free now (a host may count an incoming
    guest there already: the check is for this migration, as it starts)."""
    room = (await ask(run.destination.capacity(), f"destination host {run.spec.destination}")).memory_free_bytes
    if room is None or not at_source.memory_bytes:
        run.checked("MemoryFits", message=f"the {run.host('destination').driver} driver does not say", unknown=True)
        return
    need = at_source.memory_bytes
    with check(run, "MemoryFits", f"{_mib(need)} needed, {_mib(room)} free on {run.spec.destination}"):
        if need > room:
            raise fail(
                Reason.NotEnoughMemory,
                f"{run.source_name} needs {_mib(need)} and {run.spec.destination} has {_mib(room)} free",
            )


async def _cpu_fits(run: Run) -> None:
    guest = await ask(run.source.guest_cpu(run.source_name), f"source host {run.spec.source}")
    verdict = None
    if guest is not None:
        verdict = await ask(run.destination.cpu_fits(guest), f"destination host {run.spec.destination}")
    if verdict is None:
        run.checked("CpuCompatible", message=f"the {run.host('destination').driver} driver cannot tell", unknown=True)
        return
    fits, said = verdict
    with check(run, "CpuCompatible", said):
        if not fits:
            raise fail(Reason.CpuIncompatible, f"{run.spec.destination} cannot run {run.source_name}'s CPU: {said}")


async def _look_up_both(run: Run, offline: bool) -> tuple[DomainInfo | None, DomainInfo | None]:
    spec = run.spec
    at_source = await _lookup(run, "source", spec.domain)
    name = at_source.name if at_source else spec.domain
    target_name = spec.dname or name
    at_destination = await _lookup(run, "destination", target_name)
    if at_destination is None and at_source is None and spec.dname is None:
        at_destination = await _lookup(run, "destination", spec.domain)  # the spec may name it by UUID
    run.status.source = Endpoint(
        host=spec.source,
        domain=name,
        uuid=at_source.uuid if at_source else None,
        state=at_source.state if at_source else DomainState.absent,
        memory_bytes=at_source.memory_bytes if at_source else None,
    )
    run.status.target = Endpoint(
        host=spec.destination, domain=target_name, state=at_destination.state if at_destination else DomainState.absent
    )
    if offline:
        _check_offline(run, at_source, at_destination)
    else:
        if at_source is None and at_destination is not None and at_destination.state is DomainState.paused:
            await _not_in_flight(run)
        _check_live(run, at_source, at_destination)
    return at_source, at_destination


async def _not_in_flight(run: Run) -> None:
    """A job under way on the source before ours is called is somebody else's: Busy. Also asked when the
    domain is paused at the destination and gone from the source, which may be such a migration (xend
    shows the incoming domain early, paused, and renames the leaving one), not an arrival."""
    job = await _job(run)
    if job.phase in (JobPhase.active, JobPhase.postcopy):
        raise fail(Reason.Busy, f"{run.source_name} is already being migrated away from {run.spec.source}")


async def _hostname(run: Run) -> str:
    """The 2007 proposal: use the caller's hostname, else synthesise one from the destination."""
    if run.spec.hostname:
        return run.spec.hostname
    destination = run.host("destination")
    if destination.migration_address:
        return destination.migration_address
    return await ask(run.destination.hostname(), "cannot get the destination's host name")


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
    if run.marked:
        # prepare() looked for a job and set the marker; entering Migrating saved it: call now.
        await _call(run)
        return await monitor(run)
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
    return await ask(run.source.job(run.source_name), f"source host {run.spec.source}")


def _mark(run: Run) -> None:
    """The marker is saved before the call: after a crash, it tells the next run to look, not to call again."""
    run.status.migration_start_time = timestamp()
    run.marked = True


async def _start(run: Run) -> None:
    _mark(run)
    await _call(run)


async def _call(run: Run) -> None:
    if run.controls.aborting:
        run.status.migration_start_time = None  # not called: nothing for a later run to look for
        raise Outcome(Phase.Aborted, Reason.Aborted, "aborted before the migration started; nothing moved")
    await run.report()  # durable before the call (must_save): once saved, a no-op
    run.marked = False
    said = await ask(
        run.source.migrate(run.destination, request_of(run)), "the migration did not start", Reason.SourceFailed
    )
    if said:
        # The driver runs it otherwise than the host asked (libvirt: managed, not peer-to-peer):
        # a limitation of this migration, said in the status (and, by the operator, as an Event).
        run.status.limitations.append(said)
        run.status.message = said
        await run.report()


async def _decide_without_job(run: Run) -> None:
    """A driver with no job history: the hosts' views are all that tells what happened."""
    at_destination = await _lookup(run, "destination", run.target_name)
    if _active(at_destination):
        return  # paused may be an incoming domain not yet resumed: Verifying waits for it to run
    raise fail(
        Reason.SourceFailed,
        f"the migration was started before a restart and {run.spec.source} reports no job; "
        f"the domain was not found running on {run.spec.destination}",
    )


async def _patient_lookup(run: Run, side: Side, name: str, deadline: float) -> DomainInfo | None:
    """A lookup that rides out a host that briefly stops answering (a daemon restart, a blip)."""
    while True:
        conn = run.connection(side)
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
    at_destination = await _patient_lookup(run, "destination", run.target_name, deadline)
    while at_destination is None or at_destination.state not in want:
        if asyncio.get_running_loop().time() > deadline:
            state = at_destination.state.value if at_destination else "absent"
            raise fail(
                Reason.TargetFailed,
                f"the migration finished but {run.target_name} is {state} on {run.spec.destination}",
            )
        await asyncio.sleep(run.policy.poll_interval)
        at_destination = await _patient_lookup(run, "destination", run.target_name, deadline)
    at_source = await _patient_lookup(run, "source", run.source_name, deadline)
    if (
        at_source is not None
        and at_source.state in (DomainState.running, DomainState.paused)
        and not run.has(MigrationFlag.offline)
    ):
        raise fail(Reason.SourceFailed, f"{run.source_name} still runs on {run.spec.source} after the migration")
    if at_source is not None and run.has(MigrationFlag.undefineSource):
        try:
            await run.source.undefine(run.source_name)
        except BackendError as exc:
            # The domain has moved: whatever the source says, what failed is its clean-up there.
            raise fail(
                Reason.SourceFailed, f"migrated, but undefining {run.source_name} on the source failed: {exc}"
            ) from None
        at_source = None
    assert run.status.target is not None and run.status.source is not None
    run.status.target.state, run.status.target.uuid = at_destination.state, at_destination.uuid
    run.status.source.state = at_source.state if at_source else DomainState.absent
    where = f"{run.target_name} runs on {run.spec.destination}"
    raise Outcome(Phase.Succeeded, Reason.Completed, f"migrated: {where}")
