"""The libvirt backend through the engine, on the two real daemons (hosts A and B).

Run: ``.venv/bin/python -m pytest tests/libvirt -s`` (as root). ``-s`` shows timings and the
integrity counts. Every test asserts where the guest runs afterwards: on exactly one host.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from controller.api.enums import Phase, Reason
from controller.api.status import DomainState
from controller.engine import Controls
from tests.harness.guest import idle_domain_xml
from tests.harness.libvirtd import LibvirtHosts
from tests.libvirt.lab import A, B, Lab, Recorder, iteration_at_least, kill_qemu, migration, report

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


@pytest.fixture
def lab(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> Lab:
    return Lab(clean_libvirt_hosts, use_kvm)


async def test_idle_guest_migrates_live_with_real_progress(lab: Lab) -> None:
    name = lab.idle_guest()
    status, rec, seconds = await lab.run(migration(name, params={"bandwidth": 1}), poll_interval=0.05)
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert lab.running_on(name) == [B]
    assert lab.states(name)[A] is None  # undefineSource
    assert status.target is not None and status.target.hostname == "127.0.0.2"
    assert status.source is not None and status.source.state is DomainState.absent
    seen = [s.progress for s in rec.migrating() if s.progress and s.progress.data_total_bytes is not None]
    assert seen, "no status with byte counts while Migrating"
    assert all(p.data_total_bytes and p.data_total_bytes >= 128 * 1024 * 1024 for p in seen)
    processed = [p.data_processed_bytes or 0 for p in seen]
    assert processed == sorted(processed) and processed[-1] > 0
    assert max(p.iteration or 0 for p in seen) >= 1
    assert all(p.percent is not None and p.percent < 100 for p in seen)
    assert status.progress is not None and status.progress.percent == 100.0
    assert status.total_time_ms is not None and status.total_time_ms > 0
    report(
        "idle live",
        kvm=lab.kvm,
        seconds=seconds,
        polls_with_bytes=len(seen),
        processed_bytes=processed[-1],
        total_ms=status.total_time_ms,
        downtime_ms=status.downtime_ms,
    )


async def test_rename_with_dname(lab: Lab) -> None:
    name = lab.idle_guest()
    renamed = f"{name}-blue"
    status, _, _ = await lab.run(migration(name, dname=renamed))
    assert status.phase is Phase.Succeeded, status.message
    assert lab.running_on(renamed) == [B]
    assert lab.states(name) == {A: None, B: None}
    assert status.target is not None and status.target.domain == renamed
    assert status.target.uuid == status.source.uuid if status.source else False


async def test_there_and_back_live_only_runs_on_the_definition_left_behind(lab: Lab) -> None:
    import libvirt

    name = lab.idle_guest("round")
    there, _, t1 = await lab.run(migration(name, flags=["live"]))
    assert (there.phase, there.reason) == (Phase.Succeeded, Reason.Completed), there.message
    left = lab.states(name)[A]
    assert lab.running_on(name) == [B] and left is not None and left[0] == libvirt.VIR_DOMAIN_SHUTOFF
    back, _, t2 = await lab.run(migration(name, source=B, destination=A, flags=["live"]))
    assert (back.phase, back.reason) == (Phase.Succeeded, Reason.Completed), back.message
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None  # transient on B: gone
    assert there.source is not None and back.target is not None
    conn = lab.hosts.a.open()
    try:
        dom = conn.lookupByName(name)
        assert dom.isPersistent() and dom.UUIDString() == there.source.uuid == back.target.uuid
    finally:
        conn.close()
    report("there and back, live only", kvm=lab.kvm, leg1_s=t1, leg2_s=t2)


async def test_libvirt_refuses_another_uuid_or_our_uuid_under_another_name(lab: Lab) -> None:
    """What libvirt itself refuses at the destination is what the engine calls NameClash first."""
    import libvirt

    name = lab.idle_guest("clash")
    a, b = lab.hosts.a.open(), lab.hosts.b.open()
    params = {libvirt.VIR_MIGRATE_PARAM_URI: f"tcp://{lab.hosts.b.spec.migration_address}"}
    refusals: dict[str, str] = {}
    try:
        dom = a.lookupByName(name)
        other = b.defineXML(idle_domain_xml(name, kvm=lab.kvm))  # the name, with a UUID of its own
        assert other.UUIDString() != dom.UUIDString()
        ours = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        for case in ("other uuid", "twin"):
            if case == "twin":
                other.undefine()
                b.defineXML(ours.replace(f"<name>{name}</name>", f"<name>{name}-old</name>"))
            with pytest.raises(libvirt.libvirtError) as refused:
                await asyncio.to_thread(dom.migrate3, b, params, libvirt.VIR_MIGRATE_LIVE)
            refusals[case] = str(refused.value)
            status, _, _ = await lab.run(migration(name, flags=["live"]))
            assert (status.phase, status.reason) == (Phase.Failed, Reason.NameClash), status.message
            refusals[f"engine, {case}"] = status.message or ""
            assert lab.running_on(name) == [A]
    finally:
        a.close()
        b.close()
    assert "already exists with uuid" in refusals["other uuid"], refusals
    assert "a different domain" in refusals["engine, other uuid"]
    assert "is already defined with uuid" in refusals["twin"], refusals
    assert f"as {name}-old (shutoff)" in refusals["engine, twin"]
    report("destination refusals", **refusals)


async def test_dirtying_guest_stalls_without_postcopy(lab: Lab) -> None:
    name = lab.dirtying_guest()
    m = migration(name, params={"bandwidth": 10, "downtime": 250}, timeouts={"progress": 3})
    limits: list[int] = []
    rec = Recorder(when=iteration_at_least(1), then=lambda _s: limits.append(lab.max_downtime(name)))
    status, rec, seconds = await lab.run(m, rec)
    assert limits == [250]  # set through migrateSetMaxDowntime once the job ran
    assert (status.phase, status.reason) in {(Phase.Failed, Reason.Stalled), (Phase.Failed, Reason.Timeout)}, (
        status.message
    )
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None
    assert lab.guest_advances(lab.hosts.a, name)
    seen = [s.progress for s in rec.migrating() if s.progress]
    iterations = [p.iteration or 0 for p in seen]
    assert iterations == sorted(iterations) and iterations[-1] >= 2
    assert max(p.dirty_rate_bytes_per_second or 0 for p in seen) > 0
    assert max(p.bytes_per_second or 0 for p in seen) <= 12 * 1024 * 1024  # the cap holds
    report("dirtying pre-copy stalls", kvm=lab.kvm, seconds=seconds, reason=status.reason, iterations=iterations[-1])


async def test_synthesised_and_bare_hostnames_lead_to_working_migrations(lab: Lab) -> None:
    import libvirt

    name = lab.idle_guest()
    # No migrationAddress: the engine asks B's connection for its host name (the 2007 synthesis).
    status, _, _ = await lab.run(migration(name), addresses=False)
    assert status.phase is Phase.Succeeded, status.message
    conn = libvirt.open(lab.hosts.b.uri)
    try:
        assert status.target is not None and status.target.hostname == conn.getHostname()
    finally:
        conn.close()
    assert lab.running_on(name) == [B]
    # Back to A through a bare address, which the driver makes tcp://127.0.0.3.
    back = migration(name, source=B, destination=A, hostname="127.0.0.3")
    status, _, _ = await lab.run(back)
    assert status.phase is Phase.Succeeded, status.message
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None


async def test_peer_to_peer_migration_succeeds(lab: Lab) -> None:
    name = lab.idle_guest("p2p")
    status, _, seconds = await lab.run(migration(name), p2p=True)
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    assert status.total_time_ms is not None and status.total_time_ms > 0
    report("idle peer-to-peer", kvm=lab.kvm, seconds=seconds)


async def test_postcopy_completes_a_stalled_migration_intact(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-postcopy")
    flags = ["live", "persistDest", "undefineSource", "postCopy"]
    m = migration(name, flags=flags, params={"bandwidth": 10}, timeouts={"progress": 3})
    status, rec, seconds = await lab.run(m)
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert status.progress is not None and status.progress.mode == "PostCopy"
    assert any("switching to post-copy" in (s.message or "") for s in rec.statuses)
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    assert lab.guest_advances(lab.hosts.b, name)
    integrity = lab.integrity(lab.hosts.b, name)
    report(
        "post-copy integrity",
        kvm=lab.kvm,
        seconds=seconds,
        corrupt_pages=integrity.corrupt_pages,
        detail=integrity.summary(),
    )
    assert integrity.pattern_found
    assert integrity.corrupt_pages == 0, integrity.summary()


async def test_precopy_with_downtime_limit_converges_intact(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-precopy")
    m = migration(name, params={"downtime": 3000})  # ms: the whole dirtied region fits in the pause
    status, _, seconds = await lab.run(m)
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    assert status.downtime_ms is not None and 0 < status.downtime_ms <= 3000 + 1000
    assert lab.guest_advances(lab.hosts.b, name)
    integrity = lab.integrity(lab.hosts.b, name)
    report(
        "pre-copy integrity",
        kvm=lab.kvm,
        seconds=seconds,
        downtime_ms=status.downtime_ms,
        corrupt_pages=integrity.corrupt_pages,
        detail=integrity.summary(),
    )
    assert integrity.pattern_found
    assert integrity.corrupt_pages == 0, integrity.summary()


async def test_force_complete_suspends_the_guest_and_completes(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-force")
    controls = Controls()
    rec = Recorder(when=iteration_at_least(2), then=lambda _s: controls.request_force_complete())
    status, rec, seconds = await lab.run(migration(name, params={"bandwidth": 50}), rec, controls)
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert rec.fired_at is not None
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    assert lab.guest_advances(lab.hosts.b, name)
    report("force-complete by suspend", kvm=lab.kvm, seconds=seconds, downtime_ms=status.downtime_ms)


async def test_abort_while_migrating_leaves_the_guest_on_the_source(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-abort")
    controls = Controls()
    rec = Recorder(when=iteration_at_least(1), then=lambda _s: controls.request_abort())
    status, rec, _ = await lab.run(migration(name, params={"bandwidth": 10}), rec, controls)
    assert (status.phase, status.reason) == (Phase.Aborted, Reason.Aborted), status.message
    assert rec.fired_at is not None
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None
    assert lab.guest_advances(lab.hosts.a, name)
    assert status.source is not None and status.source.state is DomainState.running


async def test_destination_qemu_killed_fails_with_target_failed(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-kill")
    rec = Recorder(when=iteration_at_least(1), then=lambda _s: kill_qemu(lab, lab.hosts.b, name))
    status, rec, _ = await lab.run(migration(name, params={"bandwidth": 10}), rec)
    assert (status.phase, status.reason) == (Phase.Failed, Reason.TargetFailed), status.message
    assert rec.fired_at is not None
    assert lab.running_on(name) == [A]
    await _until_gone(lab, name, B)
    assert lab.guest_advances(lab.hosts.a, name)
    assert status.message and f"runs on {A}" in status.message
    report("destination QEMU killed", kvm=lab.kvm, message=status.message)


async def test_destination_daemon_stopped_fails_and_the_source_keeps_running(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-daemon")
    b = lab.hosts.b
    daemon = b.proc
    assert daemon is not None

    def stop_daemon(_s: object) -> None:
        daemon.send_signal(signal.SIGTERM)

    rec = Recorder(when=iteration_at_least(1), then=stop_daemon)
    try:
        status, rec, _ = await lab.run(migration(name, params={"bandwidth": 10}), rec)
        stopped = rec.fired_at
        assert stopped is not None
        ended = time.monotonic()
        assert daemon.wait(30) is not None
        assert (status.phase, status.reason) in {
            (Phase.Failed, Reason.TargetFailed),
            (Phase.Failed, Reason.HostUnreachable),
        }, status.message
        assert lab.state_on(lab.hosts.a, name) is not None  # B cannot answer until it restarts
        assert lab.guest_advances(lab.hosts.a, name)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait(10)
        b.proc = None
        b.start()  # the restarted daemon reconnects to, and ends, the orphaned incoming QEMU
    await _until_gone(lab, name, B)
    assert lab.running_on(name) == [A]
    report("destination daemon stopped", kvm=lab.kvm, detected_s=ended - stopped, message=status.message)


async def _until_gone(lab: Lab, name: str, host: str, timeout: float = 30) -> None:
    """The destination's incoming domain is cleaned up by its daemon a moment after the failure."""
    deadline = time.monotonic() + timeout
    while lab.states(name)[host] is not None:
        assert time.monotonic() < deadline, f"{name} still on {host}: {lab.states(name)}"
        await asyncio.sleep(0.2)
