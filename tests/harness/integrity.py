"""Check the dirtying guest's memory pattern after a migration.

The guest (see ``guest.py``) stamps each page of its region with ``(k, PAGE_MAGIC, address)``
in ascending order, pass after pass. A consistent snapshot of the region is therefore a prefix
of pages stamped k+1 followed by pages stamped k (one boundary at most). After a migration,
any page that breaks this was lost or arrived stale.

:func:`check_domain` pauses the domain, dumps the region with QMP ``pmemsave`` through
libvirt's monitor passthrough, and analyses the dump with :func:`analyse_dump`.
"""

from __future__ import annotations

import json
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .guest import DEFAULT_REGION, PAGE_MAGIC, PAGE_SIZE, DirtyRegion


@dataclass(frozen=True)
class IntegrityReport:
    """Result of checking one memory snapshot of the dirtying guest's region."""

    pages: int  # pages in the region
    stamped_pages: int  # pages carrying a valid stamp (magic + own address)
    base_pass: int  # k: the older of the two pass counters expected in the snapshot
    ahead_pages: int  # valid pages stamped k+1
    behind_pages: int  # valid pages stamped k
    bad_pages: int  # pages without a valid stamp or stamped with neither k nor k+1
    out_of_order_pages: int  # pages stamped k/k+1 but on the wrong side of the best boundary
    boundary_page: int  # index of the first page expected to hold k (best fit)

    @property
    def corrupt_pages(self) -> int:
        """Pages that break the pattern: bad ones plus out-of-order ones."""
        return self.bad_pages + self.out_of_order_pages

    @property
    def pattern_found(self) -> bool:
        """True when the guest really ran: most pages stamped and at least one full pass done."""
        return self.base_pass >= 1 and self.stamped_pages * 2 > self.pages

    def summary(self) -> str:
        return (
            f"{self.corrupt_pages} corrupt of {self.pages} pages (bad={self.bad_pages},"
            f" out_of_order={self.out_of_order_pages}); pass k={self.base_pass},"
            f" k+1 pages={self.ahead_pages}, k pages={self.behind_pages}, boundary at page"
            f" {self.boundary_page}"
        )


_STAMP = struct.Struct("<III")


def page_stamps(dump: bytes, region: DirtyRegion = DEFAULT_REGION) -> list[int | None]:
    """Per page of ``dump`` (the region's bytes): its pass counter, or None if not validly stamped."""
    if len(dump) != region.size:
        raise ValueError(f"dump is {len(dump)} bytes, region is {region.size}")
    out: list[int | None] = []
    for i in range(region.pages):
        counter, magic, addr = _STAMP.unpack_from(dump, i * PAGE_SIZE)
        out.append(counter if magic == PAGE_MAGIC and addr == region.start + i * PAGE_SIZE else None)
    return out


def analyse_stamps(stamps: Sequence[int | None]) -> IntegrityReport:
    """Fit "prefix of k+1, then k" to the stamps and count the pages that do not fit."""
    n = len(stamps)
    valid = [s for s in stamps if s is not None]
    common = Counter(valid).most_common(2)
    if not common:
        return IntegrityReport(n, 0, 0, 0, 0, n, 0, 0)
    if len(common) == 2 and abs(common[0][0] - common[1][0]) == 1:
        k = min(common[0][0], common[1][0])
    else:
        k = common[0][0]
    ahead = [s == k + 1 for s in stamps]
    behind = [s == k for s in stamps]
    bad = sum(1 for s in stamps if s is None or s not in (k, k + 1))
    # mismatches(b) = pages < b not k+1  +  pages >= b not k; choose b minimising it.
    mismatch = sum(1 for x in behind if not x)  # b = 0: everything should be k
    best, best_b = mismatch, 0
    for b in range(n):
        # moving page b from the "k" side to the "k+1" side
        mismatch += (0 if ahead[b] else 1) - (0 if behind[b] else 1)
        if mismatch < best:
            best, best_b = mismatch, b + 1
    return IntegrityReport(
        pages=n,
        stamped_pages=len(valid),
        base_pass=k,
        ahead_pages=sum(ahead),
        behind_pages=sum(behind),
        bad_pages=bad,
        out_of_order_pages=best - bad,
        boundary_page=best_b,
    )


def analyse_dump(dump: bytes, region: DirtyRegion = DEFAULT_REGION) -> IntegrityReport:
    return analyse_stamps(page_stamps(dump, region))


def qmp(dom: Any, command: str, **arguments: Any) -> Any:
    """Run a QMP command on a libvirt domain via monitor passthrough; return its ``return`` value."""
    import libvirt_qemu

    msg: dict[str, Any] = {"execute": command}
    if arguments:
        msg["arguments"] = arguments
    reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(msg), 0))
    if "error" in reply:
        raise RuntimeError(f"QMP {command} failed: {reply['error']}")
    return reply.get("return")


def dump_region(dom: Any, path: Path, region: DirtyRegion = DEFAULT_REGION) -> bytes:
    """Save the region's guest-physical memory to ``path`` (written by QEMU itself) and read it.

    ``path`` must be visible to the domain's QEMU process (i.e. not under a per-host folder).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    qmp(dom, "pmemsave", val=region.start, size=region.size, filename=str(path))
    data = path.read_bytes()
    path.unlink(missing_ok=True)
    return data


PASS_COUNTER_ADDRESS = 0x500  # the guest stores its latest completed pass here


def pass_counter(dom: Any, scratch: Path) -> int:
    """The dirtying guest's latest completed pass (read live, without pausing the guest)."""
    scratch.parent.mkdir(parents=True, exist_ok=True)
    qmp(dom, "pmemsave", val=PASS_COUNTER_ADDRESS, size=4, filename=str(scratch))
    (value,) = struct.unpack("<I", scratch.read_bytes())
    scratch.unlink(missing_ok=True)
    return int(value)


def wait_for_passes(dom: Any, scratch: Path, minimum: int = 1, timeout: float = 30.0) -> int:
    """Wait until the guest has completed ``minimum`` passes; return the counter (raise on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pass_counter(dom, scratch)
        if value >= minimum:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"guest completed only {value} passes in {timeout:.0f}s (wanted {minimum})")
        time.sleep(0.2)


def check_domain(
    dom: Any, dump_path: Path, region: DirtyRegion = DEFAULT_REGION, *, resume: bool = False
) -> IntegrityReport:
    """Pause ``dom`` (if running), dump its region, analyse it; optionally resume afterwards."""
    import libvirt

    state, _reason = dom.state()
    if state == libvirt.VIR_DOMAIN_RUNNING:
        dom.suspend()
    try:
        return analyse_dump(dump_region(dom, dump_path, region), region)
    finally:
        if resume and dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
            dom.resume()
