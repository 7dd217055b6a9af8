"""Blocking questions about a host's size and CPU; the connection runs them in its thread pool.

Memory comes from the kernel's own figures (/proc/meminfo through virNodeGetMemoryStats):
libvirt's node info and free memory add up NUMA cells, which leave out memory the kernel has
outside them (a hot-plugged virtual machine's, for one). Free is what a new guest can have
without swapping: free pages, buffers and page cache, the figure OpenStack Nova's libvirt driver
schedules by.

A guest's CPU is judged as libvirt judges it when it starts the guest at the destination, which
the two comparison calls do not do alike (both were seen on the test daemons): a KVM guest's CPU
against the host's CPU (virConnectCompareCPU; the hypervisor CPU of virConnectCompareHypervisorCPU
misses features the host has), any other guest's against what that hypervisor can provide
(virConnectCompareHypervisorCPU with its virtualization type: QEMU's TCG emulates features the
host lacks), and a CPU with check='none' not at all, as libvirt does not check it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import libvirt

from controller.backends.libvirt.errors import NO_SUPPORT
from controller.backends.protocol import BackendError, HostCapacity

KiB = 1024
MiB = 1024 * 1024
COMPARE = libvirt.VIR_CONNECT_COMPARE_CPU_FAIL_INCOMPATIBLE
VERDICTS = {
    libvirt.VIR_CPU_COMPARE_IDENTICAL: "identical to",
    libvirt.VIR_CPU_COMPARE_SUPERSET: "a superset of",
}


def capacity_of(conn: Any) -> HostCapacity:
    _model, memory_mib, cpus, *_ = conn.getInfo()
    total, free = _memory(conn, int(memory_mib) * MiB)
    return HostCapacity(
        memory_total_bytes=total,
        memory_free_bytes=free,
        cpus=int(cpus),
        cpu_model=host_cpu_model(conn.getCapabilities()),
        running_domains=int(conn.numOfDomains()),
    )


def _memory(conn: Any, cells_total: int) -> tuple[int, int]:
    try:
        stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
    except libvirt.libvirtError:
        stats = {}
    if "total" in stats and "free" in stats:
        free = sum(int(stats.get(key, 0)) for key in ("free", "buffers", "cached"))
        return int(stats["total"]) * KiB, free * KiB
    return cells_total, int(conn.getFreeMemory())  # no /proc/meminfo: the NUMA cells' figures


def host_cpu_model(capabilities: str) -> str | None:
    """The host CPU's model in libvirt's capabilities XML: the closest model libvirt knows."""
    model = ET.fromstring(capabilities).find("./host/cpu/model")
    return model.text.strip() if model is not None and model.text else None


def guest_cpu_of(dom: Any) -> str | None:
    """The domain's CPU as the destination would get it (the migratable XML), with what judging
    it needs: the domain's virtualization type and architecture. None when it defines no CPU."""
    definition = ET.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE))
    cpu = definition.find("cpu")
    if cpu is None:
        return None
    kept = ET.Element("domain", type=definition.get("type", ""))
    os_type = definition.find("./os/type")
    if os_type is not None:
        ET.SubElement(ET.SubElement(kept, "os"), "type", arch=os_type.get("arch", "")).text = os_type.text
    cpu.tail = None
    kept.append(cpu)
    return ET.tostring(kept, encoding="unicode")


def cpu_fits_on(conn: Any, guest_cpu: str) -> tuple[bool, str] | None:
    """Whether this host runs a guest with that CPU (from guest_cpu_of), and libvirt's words;
    None when this libvirt cannot compare CPUs."""
    try:
        definition = ET.fromstring(guest_cpu)
    except ET.ParseError as exc:
        raise BackendError(f"not a CPU definition: {exc}") from None
    cpu = definition.find("cpu") if definition.tag != "cpu" else definition
    if cpu is None:
        return True, "the guest defines no CPU"
    if cpu.get("check") == "none":
        return True, "libvirt does not check this guest's CPU (check='none')"
    virt_type = definition.get("type") or None
    arch = definition.find("./os/type")
    text = ET.tostring(cpu, encoding="unicode")
    try:
        if virt_type in (None, "kvm"):
            verdict = conn.compareCPU(text, COMPARE)
        else:
            verdict = conn.compareHypervisorCPU(
                None, arch.get("arch") if arch is not None else None, None, virt_type, text, COMPARE
            )
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_CPU_INCOMPATIBLE:
            return False, str(exc)
        if exc.get_error_code() in NO_SUPPORT:
            return None
        raise
    if verdict in VERDICTS:
        return True, f"the host CPU is {VERDICTS[verdict]} the guest's"
    return False, "the CPU is incompatible with host CPU"
