"""Domain XML builders for the real-libvirt tests.

* :func:`idle_domain_xml` -- a 128 MiB guest with no disk and no network (SeaBIOS finds nothing
  to boot and sits there): the cheapest thing that live-migrates.
* :func:`dirtying_domain_xml` + :func:`build_dirtying_disk` -- a guest that never converges:
  a 512-byte boot sector (assembled at test time with binutils) switches to 32-bit protected
  mode and, forever, stamps every 4 KiB page of a RAM region with the current pass counter.

Page stamp (little-endian dwords at the start of every page of the region, in ascending
address order, pass after pass)::

    +0  pass counter k (1, 2, 3, ...)
    +4  PAGE_MAGIC
    +8  physical address of the page

At any instant the region therefore holds k+1 in a prefix of pages and k in the rest; a page
that breaks this after a migration was lost or transferred stale (see ``integrity.py``).
A single store dirties each page, so the guest dirties the whole region many times per
second -- far beyond any migration bandwidth -- and pre-copy cannot converge unless the
allowed downtime covers a full copy of the region.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

MIB = 1024 * 1024
PAGE_SIZE = 4096
PAGE_MAGIC = 0x47494D44  # b"DMIG" little-endian
EMULATOR = "/usr/bin/qemu-system-x86_64"
# The disk's target name per bus. On IDE the device libvirt names (ide0-0-0) owns the block
# backend, so QEMU's monitor can write through it; virtio-blk-pci's does not (its child does).
DISK_TARGETS = {"virtio": "vda", "ide": "hda"}


@dataclass(frozen=True)
class DirtyRegion:
    """Guest-physical region that the dirtying guest rewrites."""

    start: int = 16 * MIB
    size: int = 64 * MIB

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def pages(self) -> int:
        return self.size // PAGE_SIZE


DEFAULT_REGION = DirtyRegion()

BOOT_SECTOR_ASM = r"""
    .code16
    .section .text
    .globl _start
_start:
    cli
    xorw    %ax, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movw    $0x7c00, %sp
    inb     $0x92, %al                  /* fast A20 gate */
    orb     $0x02, %al
    andb    $0xfe, %al
    outb    %al, $0x92
    movw    $0x3f8, %dx                 /* "D" on COM1: we booted */
    movb    $'D', %al
    outb    %al, %dx
    lgdtl   gdt_desc
    movl    %cr0, %eax
    orl     $1, %eax
    movl    %eax, %cr0
    ljmpl   $0x08, $protected

    .code32
protected:
    movw    $0x10, %ax
    movw    %ax, %ds
    movw    %ax, %es
    movw    %ax, %ss
    movl    $0x7c00, %esp
    xorl    %ebx, %ebx                  /* ebx = pass counter k */
next_pass:
    incl    %ebx
    movl    $REGION_START, %edi
stamp:
    movl    %ebx, (%edi)
    movl    $PAGE_MAGIC, 4(%edi)
    movl    %edi, 8(%edi)
    addl    $4096, %edi
    cmpl    $REGION_END, %edi
    jb      stamp
    movl    %ebx, 0x500                 /* latest completed pass, for debugging */
    jmp     next_pass

    .p2align 3
gdt:
    .quad   0x0000000000000000
    .quad   0x00cf9a000000ffff          /* 0x08: 32-bit flat code */
    .quad   0x00cf92000000ffff          /* 0x10: 32-bit flat data */
gdt_desc:
    .word   gdt_desc - gdt - 1
    .long   gdt

    .org    510
    .word   0xaa55
"""


def have_binutils() -> bool:
    return all(shutil.which(tool) for tool in ("as", "ld", "objcopy"))


def assemble_boot_sector(region: DirtyRegion = DEFAULT_REGION, workdir: Path | None = None) -> bytes:
    """Assemble the dirtying boot sector with ``as --32``/``ld``/``objcopy``; return its 512 bytes."""
    if region.start % PAGE_SIZE or region.size % PAGE_SIZE or region.size <= 0:
        raise ValueError(f"region must be whole pages: {region}")
    if region.start < 1 * MIB or region.end > 0xFFFF_FFFF:
        raise ValueError(f"region must lie between 1 MiB and 4 GiB: {region}")
    with tempfile.TemporaryDirectory(prefix="bootsect-", dir=workdir) as tmp:
        d = Path(tmp)
        (d / "boot.S").write_text(BOOT_SECTOR_ASM)
        defsyms = [
            f"--defsym=REGION_START={region.start}",
            f"--defsym=REGION_END={region.end}",
            f"--defsym=PAGE_MAGIC={PAGE_MAGIC}",
        ]
        steps = [
            ["as", "--32", *defsyms, "-o", "boot.o", "boot.S"],
            ["ld", "-m", "elf_i386", "-Ttext=0x7c00", "-e", "_start", "-o", "boot.elf", "boot.o"],
            ["objcopy", "-O", "binary", "-j", ".text", "boot.elf", "boot.bin"],
        ]
        for cmd in steps:
            res = subprocess.run(cmd, cwd=d, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout}{res.stderr}")
        blob = (d / "boot.bin").read_bytes()
    if len(blob) != 512 or blob[510:] != b"\x55\xaa":
        raise RuntimeError(f"boot sector is {len(blob)} bytes, signature {blob[510:]!r}")
    return blob


def build_dirtying_disk(path: Path, region: DirtyRegion = DEFAULT_REGION) -> Path:
    """Write a 1 MiB raw disk image whose first sector is the dirtying boot sector."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sector = assemble_boot_sector(region, workdir=path.parent)
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.write(sector)
        f.truncate(1 * MIB)
    path.chmod(0o444)
    return path


def _domain_xml(
    name: str,
    *,
    kvm: bool,
    memory_mib: int,
    vcpus: int,
    disk: Path | None,
    extra_devices: str = "",
    cpu: str = "",
    disk_format: str = "raw",
    readonly: bool = True,
    disk_bus: str = "virtio",
) -> str:
    disk_xml = ""
    boot = ""
    if disk is not None:
        boot = "<boot dev='hd'/>"
        disk_xml = f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='{disk_format}'/>
      <source file='{escape(str(disk))}'/>
      <target dev='{DISK_TARGETS[disk_bus]}' bus='{disk_bus}'/>{"<readonly/>" if readonly else ""}
    </disk>"""
    return f"""<domain type='{"kvm" if kvm else "qemu"}'>
  <name>{escape(name)}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <currentMemory unit='MiB'>{memory_mib}</currentMemory>
  <vcpu>{vcpus}</vcpu>{cpu}
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>{boot}
  </os>
  <features><acpi/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{EMULATOR}</emulator>{disk_xml}
    <controller type='usb' model='none'/>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <memballoon model='none'/>{extra_devices}
  </devices>
</domain>
"""


def idle_domain_xml(name: str, *, kvm: bool = False, memory_mib: int = 128, vcpus: int = 1, cpu: str = "") -> str:
    """A guest with no disk and no network (SeaBIOS idles). ``kvm`` selects ``<domain type='kvm'>``;
    ``cpu`` is its ``<cpu>`` element (none: libvirt's default model, unchecked)."""
    return _domain_xml(name, kvm=kvm, memory_mib=memory_mib, vcpus=vcpus, disk=None, cpu=cpu)


def dirtying_domain_xml(
    name: str,
    disk: Path,
    *,
    kvm: bool = False,
    memory_mib: int = 128,
    region: DirtyRegion = DEFAULT_REGION,
    disk_format: str = "raw",
    readonly: bool = True,
    disk_bus: str = "virtio",
) -> str:
    """A guest booting ``disk`` (from :func:`build_dirtying_disk`, read-only virtio) that dirties ``region``.

    ``disk`` must be at a path that both hosts' QEMU can open (not under a per-host folder), unless
    the migration copies it (``nonSharedDisk``): then a writable (``readonly=False``) disk, e.g. a
    qcow2 at the same path in each host's own ``/var/lib/libvirt/images``; libvirt copies no
    read-only disk.
    """
    if region.end > memory_mib * MIB:
        raise ValueError(f"region {region} does not fit in {memory_mib} MiB of RAM")
    return _domain_xml(
        name,
        kvm=kvm,
        memory_mib=memory_mib,
        vcpus=1,
        disk=disk,
        disk_format=disk_format,
        readonly=readonly,
        disk_bus=disk_bus,
    )
