"""The driver table: driver name -> Driver, each built on first use.

Backends with heavy or optional dependencies (libvirt-python) are imported only when a host
asks for them, so the test driver works where libvirt is not installed.
"""

from __future__ import annotations

import importlib

from controller.api.enums import Reason
from controller.backends.base import BackendError, Driver

DRIVERS: dict[str, tuple[str, str]] = {
    "test": ("controller.backends.test", "TestDriver"),
    "xend": ("controller.backends.xend", "XendDriver"),
    "libvirt": ("controller.backends.libvirt", "LibvirtDriver"),
}


class DriverTable:
    def __init__(self, preset: dict[str, Driver] | None = None) -> None:
        self._drivers: dict[str, Driver] = dict(preset or {})

    def get(self, name: str) -> Driver:
        if name not in self._drivers:
            if name not in DRIVERS:
                raise BackendError(f"no driver named {name!r} (known: {', '.join(DRIVERS)})", Reason.NoSupport)
            module, cls = DRIVERS[name]
            try:
                factory = getattr(importlib.import_module(module), cls)
            except ImportError as exc:
                raise BackendError(f"the {name} driver is not available here: {exc}", Reason.NoSupport) from None
            self._drivers[name] = factory()
        return self._drivers[name]

    async def close(self) -> None:
        for driver in self._drivers.values():
            await driver.close()
