"""The drivers the table declares (controller/api/drivers.py), each built on first use.

Backends with heavy or optional dependencies (libvirt-python) are imported only when a host
asks for them, so the test driver works where libvirt is not installed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from controller.api.drivers import DriverDeclaration, declarations
from controller.api.enums import Reason
from controller.backends.protocol import BackendError, Driver


class DriverTable:
    def __init__(
        self, preset: dict[str, Driver] | None = None, table: Mapping[str, DriverDeclaration] | None = None
    ) -> None:
        self._drivers: dict[str, Driver] = dict(preset or {})
        self._table = declarations() if table is None else table

    def get(self, name: str) -> Driver:
        if name not in self._drivers:
            if name not in self._table:
                known = ", ".join(self._table)
                raise BackendError(f"no driver named {name!r} (known: {known})", Reason.NoSupport)
            module, _, cls = self._table[name].driver.partition(":")
            try:
                factory = getattr(importlib.import_module(module), cls)
            except ImportError as exc:
                raise BackendError(f"the {name} driver is not available here: {exc}", Reason.NoSupport) from None
            self._drivers[name] = factory()
        return self._drivers[name]

    async def close(self) -> None:
        for driver in self._drivers.values():
            await driver.close()
