"""Real libvirt faults mid-migration, through the engine, managed and peer-to-peer.

Injected while the self-checking guest migrates (it never converges at ``bandwidth: 10``, so the
fault always lands mid-copy, after the first pass has sent data):

- the source daemon restarted (SIGTERM, then started again on the same state);
- the destination's incoming QEMU killed (SIGKILL);
- the destination daemon stopped (SIGTERM; restarted afterwards to see what it left).

Each must end with the guest running on exactly one host (and really running: its pass counter
moves), a final status that says where, and nothing left at the other end. Each mode is explicit
(``peerToPeer: true`` or ``false``), so the tests mean the same whatever the default is.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from controller.api.enums import Phase, Reason
from controller.api.status import DomainMigrationStatus, DomainState
from tests.harness.libvirtd import LibvirtHost, LibvirtHosts
from tests.libvirt.lab import A, B, Lab, Recorder, iteration_at_least, kill_qemu, migration, report

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

MODES = [pytest.param(False, id="managed"), pytest.param(True, id="p2p")]
SLOW = {"bandwidth": 10}  # MiB/s: the dirtying guest never converges, the fault lands mid-copy


@pytest.fixture
def lab(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> Lab:
    return Lab(clean_libvirt_hosts, use_kvm)


def _stop(host: LibvirtHost, timeout: float = 60.0) -> float:
    """SIGTERM the daemon and wait for it (QEMU processes outlive it, as under systemd); seconds taken."""
    proc = host.proc
    assert proc is not None and proc.poll() is None
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    host.proc = None
    return time.monotonic() - started


def _restart(host: LibvirtHost) -> float:
    took = _stop(host)
    host.start()
    return took


class Fault:
    """Runs a blocking fault in a thread once the recorder fires, without holding up the engine."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.action = action
        self.task: asyncio.Future[object] | None = None

    def __call__(self, _status: DomainMigrationStatus) -> None:
        self.task = asyncio.ensure_future(asyncio.to_thread(self.action))

    async def done(self) -> object:
        assert self.task is not None, "the fault was never injected"
        return await self.task


def _ends_on_a(lab: Lab, name: str, status: DomainMigrationStatus) -> None:
    """The guest runs on A alone, really runs, and the status says so."""
    assert lab.running_on(name) == [A], lab.states(name)
    assert lab.guest_advances(lab.hosts.a, name)
    assert status.message and f"runs on {A}" in status.message, status.message
    assert status.source is not None and status.source.state is DomainState.running


async def _until_gone(lab: Lab, name: str, timeout: float = 30) -> None:
    """The destination's daemon removes the incoming domain a moment after the failure."""
    deadline = time.monotonic() + timeout
    while lab.states(name)[B] is not None:
        assert time.monotonic() < deadline, f"{name} still on {B}: {lab.states(name)}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("p2p", MODES)
async def test_source_daemon_restarted_mid_migration(lab: Lab, p2p: bool) -> None:
    name = lab.dirtying_guest("fault-src")
    fault = Fault(lambda: _restart(lab.hosts.a))
    rec = Recorder(when=iteration_at_least(1), then=fault)
    m = migration(name, params=SLOW, timeouts={"progress": 20})
    status, rec, seconds = await lab.run(m, rec, options={"peerToPeer": p2p})
    stop_seconds = await fault.done()
    messages = list(dict.fromkeys(s.message for s in rec.statuses if s.message))
    report(
        "source daemon restarted",
        p2p=p2p,
        phase=status.phase.value,
        reason=status.reason,
        seconds=seconds,
        stop_seconds=stop_seconds,
        message=status.message,
        seen=messages,
    )
    assert (status.phase, status.reason) == (Phase.Failed, Reason.SourceFailed), (status.message, messages)
    assert status.message and f"{A} stopped answering mid-migration" in status.message
    _ends_on_a(lab, name, status)
    await _until_gone(lab, name)


@pytest.mark.parametrize("p2p", MODES)
async def test_destination_qemu_killed_mid_migration(lab: Lab, p2p: bool) -> None:
    name = lab.dirtying_guest("fault-qemu")
    rec = Recorder(when=iteration_at_least(1), then=lambda _s: kill_qemu(lab, lab.hosts.b, name))
    status, rec, seconds = await lab.run(migration(name, params=SLOW), rec, options={"peerToPeer": p2p})
    report("destination QEMU killed", p2p=p2p, reason=status.reason, seconds=seconds, message=status.message)
    assert rec.fired_at is not None
    assert (status.phase, status.reason) == (Phase.Failed, Reason.TargetFailed), status.message
    _ends_on_a(lab, name, status)
    await _until_gone(lab, name)


@pytest.mark.parametrize("p2p", MODES)
async def test_destination_daemon_stopped_mid_migration(lab: Lab, p2p: bool) -> None:
    name = lab.dirtying_guest("fault-dst")
    b = lab.hosts.b
    fault = Fault(lambda: _stop(b))
    rec = Recorder(when=iteration_at_least(1), then=fault)
    try:
        status, rec, seconds = await lab.run(migration(name, params=SLOW), rec, options={"peerToPeer": p2p})
        await fault.done()
        assert rec.fired_at is not None
        detected = time.monotonic() - rec.fired_at
        # B cannot answer until it restarts; A alone shows where the guest is.
        assert lab.state_on(lab.hosts.a, name) is not None
        assert lab.guest_advances(lab.hosts.a, name)
    finally:
        if b.proc is None:
            b.start()  # the restarted daemon reconnects to, and ends, the orphaned incoming QEMU
    report(
        "destination daemon stopped",
        p2p=p2p,
        reason=status.reason,
        seconds=seconds,
        detected_s=detected,
        message=status.message,
    )
    assert status.phase is Phase.Failed, status.message
    assert status.reason in {Reason.TargetFailed, Reason.HostUnreachable}, status.message
    await _until_gone(lab, name)
    _ends_on_a(lab, name, status)
