"""Fixtures for the real-libvirt tests (two libvirtd daemons on this machine)."""

from __future__ import annotations

import sys
from pathlib import Path

# The repo root must be importable as the parent of the `tests` package (for `tests.harness`),
# whichever way pytest was started (`pytest`, `python -m pytest`, from another directory).
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.harness.fixtures import (  # noqa: E402
    clean_libvirt_hosts,
    libvirt_hosts,
    sasl_libvirt_host,
    ssh_access,
    use_kvm,
)

__all__ = ["clean_libvirt_hosts", "libvirt_hosts", "sasl_libvirt_host", "ssh_access", "use_kvm"]
