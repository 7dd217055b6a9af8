"""A storage migration (``nonSharedDisk``, ``migrate_disks``) of a guest whose qcow2 disk is local.

The disk lives at the same path on both hosts, ``/var/lib/libvirt/images/<name>.qcow2``, which in
each daemon's mount namespace is that host's own folder (``<root>/<host>/lib/images``): nothing
is shared, so libvirt must copy it (NBD from the destination's QEMU, ``drive-mirror`` from the
source's) or the guest arrives without its disk. The guest is the self-checking memory guest,
booting from that disk; the rest of the disk holds a pattern written before the migration, and a
second pattern is written *through the running guest's block layer* while it migrates (QEMU's
``qemu-io`` monitor command on the source), so the mirror must carry a write made mid-copy.

After the migration: memory integrity (the guest's page stamps), the disk's bytes on the
destination (both patterns and the boot sector, by hash), and ``qemu-img compare`` of the two
hosts' files. Reported in the test output (``-s``); the status has no place for integrity.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import time
from pathlib import Path

import pytest

from controller.api.enums import Phase, Reason
from controller.api.status import DomainMigrationStatus
from tests.harness.guest import MIB, assemble_boot_sector, dirtying_domain_xml
from tests.harness.integrity import wait_for_passes
from tests.harness.libvirtd import LibvirtHost, LibvirtHosts
from tests.libvirt.lab import A, B, Lab, Recorder, copying, migration, report, unique

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

IMAGES = Path("/var/lib/libvirt/images")  # inside each daemon's namespace: the host's own folder
DISK_SIZE = 64 * MIB
BEFORE = (1 * MIB, 8 * MIB)  # offset, length: pseudo-random bytes written before the migration
DURING = (32 * MIB, 1 * MIB)  # written with 0x5a through the source's QEMU while it migrates
DURING_BYTE = 0x5A
QDEV = "ide0-0-0"  # libvirt's device id for hda: the guest's own disk, in QEMU's monitor
MODES = [pytest.param(False, id="managed"), pytest.param(True, id="p2p")]


@pytest.fixture
def lab(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> Lab:
    return Lab(clean_libvirt_hosts, use_kvm)


def _outside(host: LibvirtHost, path: Path) -> Path:
    """Where a path under /var/lib/libvirt in a host's namespace is, seen from here."""
    return host.root / "lib" / path.relative_to("/var/lib/libvirt")


def _qemu_img(*args: str) -> str:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"qemu-img {' '.join(args)}: {done.stderr or done.stdout}"
    return done.stdout


def _local_disk_guest(lab: Lab, name: str) -> tuple[Path, bytes, bytes]:
    """Define and start the guest on A with its disk in A's own images folder; return the disk's
    path (inside the namespaces), the boot sector and the pattern written at ``BEFORE``."""
    sector = assemble_boot_sector(workdir=lab.hosts.workdir(name))
    pattern = random.Random(name).randbytes(BEFORE[1])
    raw = lab.hosts.workdir(name) / "disk.raw"
    with open(raw, "wb") as f:
        f.write(sector)
        f.seek(BEFORE[0])
        f.write(pattern)
        f.truncate(DISK_SIZE)
    disk = IMAGES / f"{name}.qcow2"
    for host in lab.hosts:
        _outside(host, IMAGES).mkdir(parents=True, exist_ok=True)
    _qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(_outside(lab.hosts.a, disk)))
    raw.unlink()
    assert not _outside(lab.hosts.b, disk).exists()
    conn = lab.hosts.a.open()
    try:
        dom = conn.defineXML(
            dirtying_domain_xml(name, disk, kvm=lab.kvm, disk_format="qcow2", readonly=False, disk_bus="ide")
        )
        dom.create()
        wait_for_passes(dom, lab.hosts.workdir(name) / "counter.bin", minimum=1, timeout=60)
    finally:
        conn.close()
    return disk, sector, pattern


def _write_through_guest(lab: Lab, name: str) -> str:
    """Write ``DURING`` through the source QEMU's block layer (the guest's own disk device)."""
    import libvirt_qemu

    offset, length = DURING
    conn = lab.hosts.a.open()
    try:
        dom = conn.lookupByName(name)
        command = f'qemu-io -d {QDEV} "write -P {DURING_BYTE:#x} {offset} {length}"'
        return str(libvirt_qemu.qemuMonitorCommand(dom, command, libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP))
    finally:
        conn.close()


def _precreate(lab: Lab, disk: Path) -> None:
    """An empty image of the same size at the destination, as a user makes one: libvirt pre-creates
    a missing disk only when its folder is one of the destination's storage pools."""
    _qemu_img("create", "-q", "-f", "qcow2", str(_outside(lab.hosts.b, disk)), str(DISK_SIZE))


@pytest.mark.parametrize("p2p", MODES)
async def test_local_qcow2_disk_is_copied_with_the_guest_intact(lab: Lab, p2p: bool) -> None:
    name = unique("disk")
    disk, sector, pattern = _local_disk_guest(lab, name)
    _precreate(lab, disk)
    written: list[str] = []

    def write_once(_s: DomainMigrationStatus) -> None:
        written.append(_write_through_guest(lab, name))

    rec = Recorder(when=copying, then=write_once)
    m = migration(
        name,
        flags=["live", "persistDest", "undefineSource", "nonSharedDisk"],
        params={"migrate_disks": "hda", "downtime": 3000},
    )
    started = time.monotonic()
    status, rec, seconds = await lab.run(m, rec, options={"peerToPeer": p2p})
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert written and "error" not in written[0].lower(), written
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    assert lab.guest_advances(lab.hosts.b, name)
    memory = lab.integrity(lab.hosts.b, name)  # pauses the guest: its disk is still from here on

    copy = lab.hosts.workdir(name) / "arrived.raw"
    _qemu_img("convert", "-U", "-f", "qcow2", "-O", "raw", str(_outside(lab.hosts.b, disk)), str(copy))
    data = copy.read_bytes()
    copy.unlink()
    boot_ok = data[:512] == sector
    before_ok = _sha(data[BEFORE[0] : BEFORE[0] + BEFORE[1]]) == _sha(pattern)
    during_ok = data[DURING[0] : DURING[0] + DURING[1]] == bytes([DURING_BYTE]) * DURING[1]
    compare = subprocess.run(
        ["qemu-img", "compare", "-U", str(_outside(lab.hosts.a, disk)), str(_outside(lab.hosts.b, disk))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report(
        "storage migration (nonSharedDisk, migrate_disks=hda)",
        p2p=p2p,
        kvm=lab.kvm,
        seconds=seconds,
        wall=time.monotonic() - started,
        data_total=status.progress.data_total_bytes if status.progress else None,
        memory=f"{memory.corrupt_pages} corrupt of {memory.pages} pages",
        disk=f"boot sector {'ok' if boot_ok else 'BAD'}, {BEFORE[1] // MIB} MiB written before"
        f" {'ok' if before_ok else 'BAD'}, {DURING[1] // MIB} MiB written mid-migration {'ok' if during_ok else 'BAD'}",
        compare=compare.stdout.strip() or compare.stderr.strip(),
    )
    assert memory.pattern_found and memory.corrupt_pages == 0, memory.summary()
    assert boot_ok and before_ok and during_ok
    assert compare.returncode == 0, compare.stdout + compare.stderr  # 0: the images are identical


async def test_local_disk_without_non_shared_disk_is_refused_by_libvirt_and_stays(lab: Lab) -> None:
    """Without a copy the destination could not open the disk: libvirt refuses, nothing moves."""
    name = unique("disk-unsafe")
    _local_disk_guest(lab, name)
    status, _, _ = await lab.run(migration(name), options={"peerToPeer": False})
    assert status.phase is Phase.Failed, status.message
    assert status.message and "Migration without shared storage is unsafe" in status.message
    assert f"runs on {A}" in status.message
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None
    assert lab.guest_advances(lab.hosts.a, name)
    report("local disk without nonSharedDisk", reason=status.reason, message=status.message)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
