"""Reaching a host again after it stopped answering: its hypervisor, and the migration, go on."""

from __future__ import annotations

import contextlib

from controller.api.spec import Side
from controller.backends.protocol import BackendError
from controller.engine.run import Run


async def reconnect(run: Run, side: Side) -> None:
    """Best effort: replace the connection to one side with a fresh one, if the host answers."""
    host = run.hosts_of.get(side)
    if run.drivers is None or host is None:
        return
    try:
        fresh = await run.drivers.get(host.driver).connect(host)
    except BackendError:
        return
    stale = run.connections.get(side)
    run.connections[side] = fresh
    if stale is not None:
        with contextlib.suppress(Exception):
            await stale.close()
