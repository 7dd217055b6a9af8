"""Reaching a host again after it stopped answering: its hypervisor, and the migration, go on."""

from __future__ import annotations

import contextlib
from typing import Literal

from controller.backends.base import BackendError
from controller.engine.run import Run


async def reconnect(run: Run, side: Literal["source", "dest"]) -> None:
    """Best effort: replace the connection to one side with a fresh one, if the host answers."""
    host = run.source_host if side == "source" else run.dest_host
    if run.drivers is None or host is None:
        return
    try:
        fresh = await run.drivers.get(host.driver).connect(host)
    except BackendError:
        return
    stale = getattr(run, side)
    setattr(run, side, fresh)
    if stale is not None:
        with contextlib.suppress(Exception):
            await stale.close()
