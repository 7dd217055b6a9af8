"""What a host has and whether a guest's CPU runs there, asked of the two real daemons.

Both daemons run on this machine, so their figures are this machine's: /proc/meminfo and the
CPU count say what they must be. Run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from controller.api.enums import Phase, Reason
from controller.api.hypervisor_host import HypervisorHost
from controller.backends.libvirt.capacity import cpu_fits_on, host_cpu_model
from controller.backends.libvirt.driver import LibvirtDriver
from controller.backends.protocol import BackendError, HostConfig
from controller.backends.registry import DriverTable
from controller.operator.probe import probe
from tests.harness.libvirtd import LibvirtHosts
from tests.libvirt.lab import A, Lab, host_configs, migration, report

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

KiB = 1024
# A CPU libvirt checks when it starts the guest (check='partial'): QEMU's basic model without the
# one feature of it that an Intel host, or a nested AMD one, lacks.
CHECKED_CPU = (
    "<cpu mode='custom' match='exact' check='partial'><model fallback='forbid'>qemu64</model>"
    "<feature policy='disable' name='svm'/></cpu>"
)


def checked_as(guest_cpu: str) -> str | None:
    cpu = ET.fromstring(guest_cpu).find("cpu")
    return cpu.get("check") if cpu is not None else None


@pytest.fixture
def lab(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> Lab:
    return Lab(clean_libvirt_hosts, use_kvm)


def meminfo() -> dict[str, int]:
    found = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, value = line.partition(":")
        found[key] = int(value.split()[0]) * KiB
    return found


async def test_each_daemon_reports_this_machine_and_counts_its_running_guests(lab: Lab) -> None:
    driver = LibvirtDriver()
    a_config, b_config = host_configs(lab.hosts)
    try:
        a, b = await driver.connect(a_config), await driver.connect(b_config)
        before = await a.capacity(), await b.capacity()
        kernel = meminfo()
        for seen in before:
            assert seen.memory_total_bytes == kernel["MemTotal"]
            assert seen.memory_free_bytes is not None and 0 < seen.memory_free_bytes <= seen.memory_total_bytes
            # free pages, buffers and page cache: near what the kernel calls available
            assert abs(seen.memory_free_bytes - kernel["MemAvailable"]) < kernel["MemTotal"] // 4
            assert seen.cpus == os.cpu_count()
            assert seen.running_domains == 0
        conn = lab.hosts.a.open()
        try:
            arch, cells_mib, *_ = conn.getInfo()
            cells_free = conn.getFreeMemory()
            assert before[0].cpu_model == host_cpu_model(conn.getCapabilities())
            assert before[0].cpu_model, "libvirt names no host CPU model"
        finally:
            conn.close()
        name = lab.idle_guest("cap")
        assert (await a.capacity()).running_domains == 1 and (await b.capacity()).running_domains == 0
        status, _, _ = await lab.run(migration(name))
        assert status.phase is Phase.Succeeded, status.message
        assert (await a.capacity()).running_domains == 0 and (await b.capacity()).running_domains == 1
        report(
            "capacity",
            total_bytes=before[0].memory_total_bytes,
            free_bytes=before[0].memory_free_bytes,
            cpus=before[0].cpus,
            model=before[0].cpu_model,
            arch=arch,
            numa_cells_mib=cells_mib,  # virNodeGetInfo's memory and virNodeGetFreeMemory, for comparison
            numa_cells_free_bytes=cells_free,
        )
        await a.close()
        await b.close()
    finally:
        await driver.close()


async def test_the_probe_writes_the_capacity_into_the_status(lab: Lab) -> None:
    lab.idle_guest("probed")
    host = HypervisorHost.parse(
        {"metadata": {"name": A}, "spec": {"driver": "libvirt", "uri": lab.hosts.a.uri}, "status": {}}
    )
    drivers = DriverTable({"libvirt": LibvirtDriver()})
    try:
        found = await probe(host, drivers, None)
    finally:
        await drivers.close()
    assert found["reachable"] is True and found["domainCount"] == 1 and found["runningDomains"] == 1
    assert found["memoryTotalBytes"] == meminfo()["MemTotal"] and found["cpus"] == os.cpu_count()
    assert 0 < found["memoryFreeBytes"] <= found["memoryTotalBytes"] and found["cpuModel"]


async def test_a_guest_cpu_is_judged_as_libvirt_judges_it_at_the_destination(lab: Lab) -> None:
    driver = LibvirtDriver()
    a_config, b_config = host_configs(lab.hosts)
    try:
        a, b = await driver.connect(a_config), await driver.connect(b_config)
        # No <cpu> in the definition: libvirt gives it its default model and never checks it.
        unchecked = await a.guest_cpu(lab.idle_guest("default-cpu"))
        assert unchecked is not None and checked_as(unchecked) == "none"
        assert await b.cpu_fits(unchecked) == (True, "libvirt does not check this guest's CPU (check='none')")

        checked_name = lab.idle_guest("checked-cpu", cpu=CHECKED_CPU)
        checked = await a.guest_cpu(checked_name)
        assert checked is not None and checked_as(checked) == "partial"
        kept = ET.fromstring(checked)  # the domain's virtualization type and architecture go with it
        arch = kept.find("./os/type")
        assert (kept.get("type"), arch.get("arch") if arch is not None else None) == (
            "kvm" if lab.kvm else "qemu",
            "x86_64",
        )
        fits = await b.cpu_fits(checked)
        assert fits is not None and fits[0], fits
        assert re.fullmatch(r"the host CPU is (identical to|a superset of) the guest's", fits[1])
        # ... and it was right: the guest goes there.
        status, _, _ = await lab.run(migration(checked_name))
        assert status.phase is Phase.Succeeded, status.message

        # No x86 CPU has both Intel's and AMD's virtualization extensions: qemu64 has svm, add vmx.
        definition = ET.fromstring(checked)
        for feature in definition.iter("feature"):
            if feature.get("name") == "svm":
                feature.set("policy", "require")
        ET.SubElement(definition.find("cpu"), "feature", policy="require", name="vmx")  # type: ignore[arg-type]
        both = ET.tostring(definition, encoding="unicode")
        verdict = await b.cpu_fits(both)
        assert verdict is not None and not verdict[0]
        assert "the CPU is incompatible with host CPU: Host CPU does not provide required features:" in verdict[1]
        assert re.search(r"\b(vmx|svm)\b", verdict[1])
        report("cpu", kvm=lab.kvm, compatible=fits[1], incompatible=verdict[1])
        await a.close()
        await b.close()
    finally:
        await driver.close()


async def test_a_domain_that_is_not_there_is_domain_not_found(lab: Lab) -> None:
    driver = LibvirtDriver()
    try:
        a = await driver.connect(HostConfig(A, "libvirt", lab.hosts.a.uri))
        with pytest.raises(BackendError) as info:
            await a.guest_cpu("nosuch")
        assert info.value.reason is Reason.DomainNotFound
        await a.close()
    finally:
        await driver.close()


# ---- without a daemon: what is asked of libvirt, and how its answers are read ----------------


class Answers:
    """A virConnect that records the comparison asked and answers as told."""

    def __init__(self, verdict: int | libvirt.libvirtError) -> None:
        self.verdict = verdict
        self.asked: list[tuple[str, tuple[object, ...]]] = []

    def _answer(self, call: str, *args: object) -> int:
        self.asked.append((call, args))
        if isinstance(self.verdict, libvirt.libvirtError):
            raise self.verdict
        return self.verdict

    def compareCPU(self, *args: object) -> int:  # libvirt's name
        return self._answer("compareCPU", *args)

    def compareHypervisorCPU(self, *args: object) -> int:  # libvirt's name
        return self._answer("compareHypervisorCPU", *args)


def error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, 0, message, 2, None, None, None, 0, 0)  # what virGetLastError() returns
    return exc


CPU = '<cpu mode="custom" match="exact" check="partial"><model fallback="forbid">qemu64</model></cpu>'
FAIL = libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE


def guest(virt_type: str, cpu: str = CPU) -> str:
    return f"<domain type='{virt_type}'><os><type arch='x86_64'>hvm</type></os>{cpu}</domain>"


def test_a_kvm_guest_against_the_host_cpu_any_other_against_its_hypervisor() -> None:
    kvm, tcg = Answers(libvirt.VIR_CPU_COMPARE_SUPERSET), Answers(libvirt.VIR_CPU_COMPARE_IDENTICAL)
    assert cpu_fits_on(kvm, guest("kvm")) == (True, "the host CPU is a superset of the guest's")
    assert cpu_fits_on(tcg, guest("qemu")) == (True, "the host CPU is identical to the guest's")
    assert kvm.asked == [("compareCPU", (CPU, FAIL))]
    assert tcg.asked == [("compareHypervisorCPU", (None, "x86_64", None, "qemu", CPU, FAIL))]
    bare = Answers(libvirt.VIR_CPU_COMPARE_IDENTICAL)  # a <cpu> element alone is judged as a KVM guest's
    assert cpu_fits_on(bare, CPU) == (True, "the host CPU is identical to the guest's")
    assert bare.asked == [("compareCPU", (CPU, FAIL))]


def test_what_libvirt_does_not_check_or_cannot_compare() -> None:
    asked = Answers(libvirt.VIR_CPU_COMPARE_INCOMPATIBLE)
    unchecked = CPU.replace('check="partial"', 'check="none"')
    assert cpu_fits_on(asked, guest("kvm", unchecked)) == (
        True,
        "libvirt does not check this guest's CPU (check='none')",
    )
    assert cpu_fits_on(asked, "<domain type='kvm'/>") == (True, "the guest defines no CPU")
    assert asked.asked == []
    said = "the CPU is incompatible with host CPU: Host CPU does not provide required features: svm"
    assert cpu_fits_on(Answers(error(libvirt.VIR_ERR_CPU_INCOMPATIBLE, said)), guest("kvm")) == (False, said)
    assert cpu_fits_on(Answers(error(libvirt.VIR_ERR_NO_SUPPORT, "not supported")), guest("xen")) is None
    with pytest.raises(libvirt.libvirtError):  # anything else is the connection's to report
        cpu_fits_on(Answers(error(libvirt.VIR_ERR_INTERNAL_ERROR, "oops")), guest("kvm"))
    with pytest.raises(BackendError, match="not a CPU definition"):
        cpu_fits_on(asked, "<cpu")


def test_the_host_cpu_model_is_the_capabilities_own() -> None:
    caps = (
        "<capabilities><host><cpu><arch>x86_64</arch><model>EPYC-Rome</model><vendor>AMD</vendor></cpu></host>"
        "</capabilities>"
    )
    assert host_cpu_model(caps) == "EPYC-Rome"
    assert host_cpu_model("<capabilities><host><cpu><arch>aarch64</arch></cpu></host></capabilities>") is None
