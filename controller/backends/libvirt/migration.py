"""One migrate call in flight: libvirt's migrate3/migrateToURI3 block until the migration ends.

The call runs in a daemon thread (not the driver's pool: it holds a thread for the migration's
whole length, and a process that must exit should not wait for it), on connections of its own:
other calls on a connection that is inside a long migrate call wait for libvirt's keepalive tick
(measured: up to 5 s per call), which would starve the job-statistics polls. Its outcome is kept
here so the connection can report it after the call returns.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import libvirt

Call = Callable[[], dict[str, Any] | None]  # returns the finished job's statistics when it has them


@dataclass(eq=False)  # identity: a task is one call
class MigrationTask:
    domain: str
    uuid: str
    future: Future[dict[str, Any] | None] = field(default_factory=Future)
    abort_requested: bool = False
    destination_lost: str | None = None  # why the destination's daemon went away mid-call
    peer_to_peer: bool = False  # the source daemon drives it (migrateToURI3 with PEER2PEER)
    postcopy_seen: bool = False
    last_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.future.done()

    def start(self, call: Call, when_done: Callable[[], None]) -> None:
        def run() -> None:
            try:
                result = call()
            except BaseException as exc:
                self.future.set_exception(exc)
            else:
                self.future.set_result(result)
            when_done()

        threading.Thread(target=run, name=f"migrate-{self.domain}", daemon=True).start()


def _close(conn: Any) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        conn.unregisterCloseCallback()
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()


def managed_call(source_conn: Any, destination_conn: Any, uuid: str, params: dict[str, Any], flags: int) -> Call:
    """This process drives libvirt's protocol between the two daemons (virDomainMigrate3)."""

    def call() -> dict[str, Any] | None:
        try:
            ddom = source_conn.lookupByUUIDString(uuid).migrate3(destination_conn, params, flags)
            try:
                # The destination keeps the finished job's statistics; the source may have undefined it.
                return dict(ddom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED))
            except libvirt.libvirtError:
                return None
        finally:
            _close(destination_conn)
            _close(source_conn)

    return call


def peer_to_peer_call(source_conn: Any, uuid: str, destination_uri: str, params: dict[str, Any], flags: int) -> Call:
    """The source daemon connects to the destination itself (virDomainMigrateToURI3, PEER2PEER)."""

    def call() -> dict[str, Any] | None:
        try:
            source_conn.lookupByUUIDString(uuid).migrateToURI3(destination_uri, params, flags)
            return None  # the JOB_COMPLETED event carries the statistics
        finally:
            _close(source_conn)

    return call
