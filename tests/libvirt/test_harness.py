"""Prove the real-libvirt harness: two daemons, live migration between them, a guest that does not
converge under a bandwidth cap, post-copy, and the memory-integrity check.

Run: ``.venv/bin/python -m pytest tests/libvirt -s`` (as root, after ``scripts/install-libvirt.sh``).
``-s`` shows the measured times and integrity counts. Tests marked ``libvirt`` skip (with the reason)
when libvirtd/QEMU/libvirt-python are missing; the few unmarked ones check the harness's own logic.
"""

from __future__ import annotations

import struct
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.harness.guest import (
    DEFAULT_REGION,
    MIB,
    PAGE_MAGIC,
    PAGE_SIZE,
    DirtyRegion,
    assemble_boot_sector,
    build_dirtying_disk,
    dirtying_domain_xml,
    have_binutils,
    idle_domain_xml,
)
from tests.harness.integrity import IntegrityReport, analyse_dump, check_domain, pass_counter, wait_for_passes
from tests.harness.libvirtd import LibvirtHost, LibvirtHosts

try:
    import libvirt
except ImportError:  # the libvirt-marked tests skip through the libvirt_hosts fixture
    libvirt = None

LIVE_FLAGS = (
    libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    if libvirt is not None
    else 0
)


def _report(label: str, **values: object) -> None:
    text = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    print(f"\n[libvirt-harness] {label}: {text}")


@dataclass
class Migration:
    """``dom.migrate3`` running in a background thread (it blocks until the migration ends)."""

    dom: Any
    dconn: Any
    params: dict[str, Any]
    flags: int
    result: Any = None
    error: BaseException | None = None
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Migration:
        self._thread = threading.Thread(target=self._run, name="migrate3", daemon=True)
        self.started = time.monotonic()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self.dom.migrate3(self.dconn, self.params, self.flags)
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished = time.monotonic()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout: float) -> bool:
        assert self._thread is not None
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _domain_names(conn: Any) -> set[str]:
    return {d.name() for d in conn.listAllDomains(0)}


def _start_dirtying_guest(hosts: LibvirtHosts, conn: Any, name: str, kvm: bool) -> Any:
    disk = build_dirtying_disk(hosts.workdir(name) / "boot.img")
    dom = conn.defineXML(dirtying_domain_xml(name, disk, kvm=kvm))
    dom.create()
    wait_for_passes(dom, hosts.workdir(name) / "counter.bin", minimum=1, timeout=60)
    return dom


def _job_stats(dom: Any) -> dict[str, Any]:
    try:
        return dict(dom.jobStats(0))
    except libvirt.libvirtError:
        return {}


def _wait_for_iteration(dom: Any, migration: Migration, iteration: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline and migration.running:
        stats = _job_stats(dom)
        if stats.get(libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION, 0) >= iteration:
            return stats
        time.sleep(0.25)
    raise AssertionError(
        f"migration did not reach memory iteration {iteration} in {timeout}s"
        f" (running={migration.running}, error={migration.error}, stats={stats})"
    )


def _assert_runs_only_on(name: str, here: LibvirtHost, there: LibvirtHost) -> Any:
    conn_here, conn_there = here.open(), there.open()
    try:
        dom = conn_here.lookupByName(name)
        assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING, dom.state()
        assert dom.isPersistent()
        assert name not in _domain_names(conn_there), f"{name} still defined on host {there.name}"
        return dom
    finally:
        conn_there.close()


@pytest.fixture
def hosts(clean_libvirt_hosts: LibvirtHosts) -> LibvirtHosts:
    return clean_libvirt_hosts


@pytest.fixture
def conns(hosts: LibvirtHosts) -> Iterator[tuple[Any, Any]]:
    ca, cb = hosts.a.open(), hosts.b.open()
    try:
        yield ca, cb
    finally:
        ca.close()
        cb.close()


@pytest.mark.libvirt
@pytest.mark.slow
def test_daemons_answer_with_distinct_host_uuids(hosts: LibvirtHosts, conns: tuple[Any, Any]) -> None:
    uuids = []
    for host, conn in zip(hosts, conns, strict=True):
        caps = ET.fromstring(conn.getCapabilities())
        host_uuid = caps.findtext("host/uuid")
        assert host_uuid == host.host_uuid
        assert conn.getURI() == host.uri
        assert conn.getType() == "QEMU"
        assert conn.getHostname()  # the machine's hostname, the same for both
        uuids.append(host_uuid)
    assert uuids[0] != uuids[1]
    assert hosts.uris == ("qemu+tcp://127.0.0.1:16509/system", "qemu+tcp://127.0.0.2:16510/system")
    _report("startup", daemons_answer_s=hosts.startup_seconds, qemu_probe_s=hosts.warm_up_seconds)


@pytest.mark.libvirt
@pytest.mark.slow
def test_idle_guest_live_migrates_a_to_b_and_back(hosts: LibvirtHosts, conns: tuple[Any, Any], use_kvm: bool) -> None:
    ca, cb = conns
    name = _unique("idle")
    dom = ca.defineXML(idle_domain_xml(name, kvm=use_kvm))
    t0 = time.monotonic()
    dom.create()
    start_s = time.monotonic() - t0
    assert name not in _domain_names(cb)

    t0 = time.monotonic()
    ddom = dom.migrate3(cb, {libvirt.VIR_MIGRATE_PARAM_URI: hosts.b.migrate_uri}, LIVE_FLAGS)
    to_b_s = time.monotonic() - t0
    assert ddom.name() == name
    moved = _assert_runs_only_on(name, hosts.b, hosts.a)
    assert moved.UUIDString() == dom.UUIDString()
    assert ET.fromstring(moved.XMLDesc(0)).get("type") == ("kvm" if use_kvm else "qemu")

    # Back to A without an explicit migrate_uri: host A's qemu.conf migration_host is used.
    t0 = time.monotonic()
    moved.migrate3(ca, {}, LIVE_FLAGS)
    to_a_s = time.monotonic() - t0
    _assert_runs_only_on(name, hosts.a, hosts.b)
    _report("idle guest", kvm=use_kvm, start_s=start_s, migrate_a_to_b_s=to_b_s, migrate_b_to_a_s=to_a_s)


@pytest.mark.libvirt
@pytest.mark.slow
def test_dirtying_guest_does_not_converge_at_10_mib_s(
    hosts: LibvirtHosts, conns: tuple[Any, Any], use_kvm: bool
) -> None:
    ca, cb = conns
    name = _unique("dirty-capped")
    dom = _start_dirtying_guest(hosts, ca, name, use_kvm)
    params = {libvirt.VIR_MIGRATE_PARAM_URI: hosts.b.migrate_uri, libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 10}
    migration = Migration(dom, cb, params, LIVE_FLAGS).start()

    iterations: list[int] = []
    last: dict[str, Any] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and migration.running:
        stats = _job_stats(dom)
        if libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION in stats:
            iterations.append(stats[libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION])
            last = stats
        time.sleep(1)
    assert migration.running, f"migration finished within 30 s at 10 MiB/s: error={migration.error}"
    assert iterations, "no jobStats with memory_iteration while migrating"
    assert iterations == sorted(iterations)
    assert iterations[-1] >= 3 and iterations[-1] > iterations[0], iterations
    assert last.get(libvirt.VIR_DOMAIN_JOB_MEMORY_REMAINING, 0) > 0
    assert last.get(libvirt.VIR_DOMAIN_JOB_MEMORY_BPS, 0) <= 12 * 1024 * 1024  # the cap holds

    dom.abortJob()
    assert migration.join(60), "migrate3 did not return after abortJob"
    assert isinstance(migration.error, libvirt.libvirtError), migration.result
    assert name not in _domain_names(cb)
    dom = _assert_runs_only_on(name, hosts.a, hosts.b)
    scratch = hosts.workdir(name) / "counter.bin"
    before = pass_counter(dom, scratch)
    time.sleep(1)
    assert pass_counter(dom, scratch) > before, "guest does not run on A after the aborted migration"
    _report(
        "capped pre-copy (aborted)",
        kvm=use_kvm,
        seconds=migration.seconds,
        iterations=iterations,
        dirty_rate_pages_s=last.get(libvirt.VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE),
        bps=last.get(libvirt.VIR_DOMAIN_JOB_MEMORY_BPS),
    )


def _check_destination(hosts: LibvirtHosts, name: str) -> IntegrityReport:
    dom = _assert_runs_only_on(name, hosts.b, hosts.a)
    scratch = hosts.workdir(name) / "counter.bin"
    before = pass_counter(dom, scratch)
    wait_for_passes(dom, scratch, minimum=before + 2, timeout=30)  # the guest runs on B
    report = check_domain(dom, hosts.workdir(name) / "dump.bin", DEFAULT_REGION)
    assert report.pages == DEFAULT_REGION.pages
    assert report.pattern_found, report.summary()
    assert report.base_pass >= before, report.summary()
    return report


@pytest.mark.libvirt
@pytest.mark.slow
@pytest.mark.parametrize("kvm", [False, True], ids=["tcg", "kvm"])
def test_dirtying_guest_post_copy_completes(
    hosts: LibvirtHosts, conns: tuple[Any, Any], use_kvm: bool, kvm: bool
) -> None:
    if kvm and not use_kvm:
        pytest.skip("KVM not usable here")
    ca, cb = conns
    name = _unique(f"dirty-postcopy-{'kvm' if kvm else 'tcg'}")
    dom = _start_dirtying_guest(hosts, ca, name, kvm)
    params = {libvirt.VIR_MIGRATE_PARAM_URI: hosts.b.migrate_uri, libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 10}
    migration = Migration(dom, cb, params, LIVE_FLAGS | libvirt.VIR_MIGRATE_POSTCOPY).start()
    _wait_for_iteration(dom, migration, 2, timeout=60)  # pre-copy did a full pass and is re-sending
    switched_at = time.monotonic()
    dom.migrateStartPostCopy(0)
    assert migration.join(120), "post-copy migration did not finish within 120 s"
    assert migration.error is None, migration.error
    post_copy_s = time.monotonic() - switched_at
    report = _check_destination(hosts, name)
    _report(
        "post-copy",
        kvm=kvm,
        total_s=migration.seconds,
        after_switch_s=post_copy_s,
        corrupt_pages=report.corrupt_pages,
        detail=report.summary(),
    )


@pytest.mark.libvirt
@pytest.mark.slow
@pytest.mark.parametrize("kvm", [False, True], ids=["tcg", "kvm"])
def test_dirtying_guest_pre_copy_unlimited_with_generous_downtime(
    hosts: LibvirtHosts, conns: tuple[Any, Any], use_kvm: bool, kvm: bool
) -> None:
    if kvm and not use_kvm:
        pytest.skip("KVM not usable here")
    ca, cb = conns
    name = _unique(f"dirty-precopy-{'kvm' if kvm else 'tcg'}")
    dom = _start_dirtying_guest(hosts, ca, name, kvm)
    dom.migrateSetMaxDowntime(3000, 0)  # ms: enough to send the whole region while paused
    migration = Migration(dom, cb, {libvirt.VIR_MIGRATE_PARAM_URI: hosts.b.migrate_uri}, LIVE_FLAGS).start()
    if not migration.join(90):
        dom.abortJob()
        migration.join(30)
        pytest.fail(f"pre-copy with 3 s max downtime did not converge in 90 s: {_job_stats(dom)}")
    assert migration.error is None, migration.error
    ddom = migration.result
    completed: dict[str, Any] = {}
    try:
        completed = dict(ddom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
    except libvirt.libvirtError:
        pass
    report = _check_destination(hosts, name)
    _report(
        "pre-copy unlimited",
        kvm=kvm,
        seconds=migration.seconds,
        downtime_ms=completed.get(libvirt.VIR_DOMAIN_JOB_DOWNTIME),
        iterations=completed.get(libvirt.VIR_DOMAIN_JOB_MEMORY_ITERATION),
        corrupt_pages=report.corrupt_pages,
        detail=report.summary(),
    )


# -- the harness's own logic (no libvirt needed) ------------------------------------------------------

SMALL = DirtyRegion(start=16 * MIB, size=1 * MIB)  # 256 pages


def _snapshot(counters: Sequence[int | None], region: DirtyRegion = SMALL) -> bytes:
    buf = bytearray(region.size)
    for i, k in enumerate(counters):
        if k is not None:
            struct.pack_into("<III", buf, i * PAGE_SIZE, k, PAGE_MAGIC, region.start + i * PAGE_SIZE)
    return bytes(buf)


def test_integrity_accepts_a_consistent_snapshot() -> None:
    report = analyse_dump(_snapshot([8] * 100 + [7] * 156), SMALL)
    assert (report.corrupt_pages, report.base_pass, report.boundary_page) == (0, 7, 100)
    assert (report.ahead_pages, report.behind_pages, report.stamped_pages) == (100, 156, 256)
    assert report.pattern_found
    assert analyse_dump(_snapshot([5] * 256), SMALL).corrupt_pages == 0


def test_integrity_counts_stale_lost_and_out_of_order_pages() -> None:
    counters: list[int | None] = [*([8] * 100), *([7] * 156)]
    counters[3] = 2  # stale by several passes
    counters[50] = None  # lost (zero page)
    counters[200] = 7 + 2  # from the future
    counters[150] = counters[151] = 8  # k+1 after the boundary
    counters[10] = 7  # k before the boundary
    dump = bytearray(_snapshot(counters))
    struct.pack_into("<I", dump, 30 * PAGE_SIZE + 8, 0xDEAD000)  # right counter, wrong address
    report = analyse_dump(bytes(dump), SMALL)
    assert report.bad_pages == 4
    assert report.out_of_order_pages == 3
    assert report.corrupt_pages == 7
    assert report.base_pass == 7 and report.boundary_page == 100
    assert report.pattern_found


def test_integrity_reports_no_pattern_for_an_empty_region() -> None:
    report = analyse_dump(bytes(SMALL.size), SMALL)
    assert not report.pattern_found
    assert report.bad_pages == SMALL.pages


@pytest.mark.skipif(not have_binutils(), reason="binutils (as/ld/objcopy) not installed")
def test_boot_sector_assembles_with_region_constants() -> None:
    sector = assemble_boot_sector(DirtyRegion(start=32 * MIB, size=8 * MIB))
    assert len(sector) == 512 and sector.endswith(b"\x55\xaa")
    assert struct.pack("<I", 32 * MIB) in sector and struct.pack("<I", 40 * MIB) in sector
    assert struct.pack("<I", PAGE_MAGIC) in sector
    with pytest.raises(ValueError):
        dirtying_domain_xml("x", Path("/nonexistent"), memory_mib=64)  # region ends at 80 MiB
