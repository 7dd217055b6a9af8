"""The `libvirt` driver: libvirt-python against any libvirt daemon (qemu+tcp/tls/ssh/unix, xen)."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import libvirt

from controller.api.enums import LIBVIRT_FLAG_BITS
from controller.backends.libvirt.connection import LibvirtConnection
from controller.backends.libvirt.declaration import DECLARATION
from controller.backends.libvirt.errors import connect_error
from controller.backends.libvirt.events import ensure_event_loop
from controller.backends.libvirt.pki import client_uri
from controller.backends.libvirt.translate import supported_params
from controller.backends.protocol import Capabilities, Connection, Credentials, Driver, HostConfig

CAPABILITIES = Capabilities(
    flags=frozenset(LIBVIRT_FLAG_BITS),
    # The parameters this libvirt-python knows by name (and `downtime`, set once the job runs).
    params=supported_params(value for key, value in vars(libvirt).items() if key.startswith("VIR_MIGRATE_PARAM_")),
    rename=True,
    localhost=False,  # libvirt refuses to migrate a domain to the host it runs on
    progress=True,
    abort=True,
    postcopy=True,
    suspend=True,
    # libvirt keeps a finished job's statistics only while the daemon runs and the domain stays
    # defined on the source, so "no job" does not prove the migrate call was never made.
    job_history=False,
    live_tuning=frozenset({"bandwidth", "downtime"}),
    capacity=True,
    cpu_compare=True,
)


def open_host(host: HostConfig) -> Any:
    """A new virConnect to the host, answering libvirt's auth callback from the host's Secret (and
    showing the TLS client certificate it may hold)."""
    return _open(client_uri(host), host.credentials)


def _open(uri: str, credentials: Credentials | None) -> Any:
    if credentials is None:
        return libvirt.open(uri)

    def answer(requested: list[list[Any]], _opaque: Any) -> int:
        for cred in requested:
            if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                cred[4] = credentials.get("username") or ""
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                cred[4] = credentials.get("password") or ""
            else:
                return -1
        return 0

    auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]
    return libvirt.openAuth(uri, auth, 0)


class LibvirtDriver(Driver):
    name = DECLARATION.name
    capabilities = CAPABILITIES

    def __init__(self, workers: int = 16) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="libvirt")

    async def connect(self, host: HostConfig) -> Connection:
        ensure_event_loop()  # before the first connection, or it gets no keepalive and no events
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(self._pool, functools.partial(open_host, host))
        except libvirt.libvirtError as exc:
            raise connect_error(exc, host) from None
        p2p = host.options.get("peerToPeer")  # None: peer-to-peer, managed when it cannot be
        connection = LibvirtConnection(host, conn, self._pool, open_host, peer_to_peer=p2p)
        await connection.watch_events()
        return connection

    async def close(self) -> None:
        self._pool.shutdown(wait=False)
