"""The destination side: xend's relocation listener (xend-relocation-server, port 8002)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from xendsim import stream
from xendsim.config import Address
from xendsim.errors import XendError
from xendsim.node import Node
from xendsim.state import Domain, DomainSpec, Power
from xendsim.sxp import Sxp, child_value, name

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
DISCARD_TIMEOUT = 10.0


class RelocationListener:
    """Accepts incoming migrations; can stop listening and listen again on the same port."""

    def __init__(self, node: Node, address: Address) -> None:
        self.node = node
        self.address = address
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._on_connection, self.address[0], self.address[1], reuse_address=True
        )
        # Keep the port a test asked for with 0, so that listening again reuses it.
        self.address = self._server.sockets[0].getsockname()[:2]

    async def unlisten(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def close(self) -> None:
        await self.unlisten()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await Receiver(self.node, reader, writer).run()
        except Exception:
            log.exception("relocation connection failed")
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class Receiver:
    """One incoming migration: handshake, paused domain, memory, then run it."""

    def __init__(self, node: Node, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.node = node
        self.reader = reader
        self.writer = writer

    async def run(self) -> None:
        mode = self.node.faults.relocation
        if mode == "hangup":
            return
        try:
            request = await stream.read_message(self.reader)
        except stream.ProtocolError as exc:
            await self._reply(stream.err_message(str(exc)))
            return
        if request is None:
            return
        if name(request) != "receive":
            await self._reply(stream.err_message(f"Invalid operation: {name(request)}"))
            return
        if mode == "reject":
            await self._reply(stream.err_message(f"Relocation refused by {self.node.config.name}"))
            return
        await self._reply(stream.message(["ready", "receive"]))
        await self._restore()

    async def _restore(self) -> None:
        try:
            config, total = await stream.read_header(self.reader)
            spec = _incoming_spec(config)
        except (stream.ProtocolError, ValueError) as exc:
            await self._reply(stream.err_message(str(exc)))
            return
        except (asyncio.IncompleteReadError, OSError):
            return
        try:
            # xend created the domain early, paused, under its own name.
            domain = self.node.state.receive(spec)
        except XendError as exc:
            await self._reply(stream.err_message(str(exc), type(exc).__name__))
            await self._discard_rest()
            return
        try:
            complete = await self._receive_image(total)
        except BaseException:
            self.node.state.destroy(domain)  # a managed definition it arrived on stays, halted
            raise
        if not complete:
            self.node.state.destroy(domain)
            return
        await self._finish(domain)

    async def _receive_image(self, total: int) -> bool:
        drop_at = self.node.faults.drop_at
        drop_point = None if drop_at is None else int(drop_at * total)
        received = 0
        while True:
            if drop_point is not None and received >= drop_point:
                self.writer.transport.abort()
                return False
            if received >= total:
                return True
            limit = min(CHUNK, total - received)
            if drop_point is not None:
                limit = min(limit, drop_point - received)
            try:
                data = await self.reader.read(limit)
            except OSError:
                return False
            if not data:
                return False
            received += len(data)

    async def _finish(self, domain: Domain) -> None:
        delay = self.node.faults.resume_delay
        if delay > 0:
            await self._reply(stream.message(["ok"]))
            await asyncio.sleep(delay)
            domain.state = Power.RUNNING
            return
        domain.state = Power.RUNNING
        await self._reply(stream.message(["ok"]))

    async def _discard_rest(self) -> None:
        """Read until the source hangs up: closing on unread data would reset the
        connection, and the source might lose the reply explaining why."""
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(DISCARD_TIMEOUT):
                while await self.reader.read(CHUNK):
                    pass

    async def _reply(self, data: bytes) -> None:
        with contextlib.suppress(OSError):
            self.writer.write(data)
            await self.writer.drain()


def _incoming_spec(config: Sxp) -> DomainSpec:
    domain_name = child_value(config, "name")
    memory = child_value(config, "memory")
    if not domain_name or memory is None:
        raise ValueError("domain config lacks name or memory")
    maxmem = child_value(config, "maxmem")
    return DomainSpec(
        name=domain_name,
        memory=int(memory),
        maxmem=int(maxmem) if maxmem is not None else None,
        vcpus=int(child_value(config, "vcpus", "1") or 1),
        uuid=child_value(config, "uuid"),
        state=Power.PAUSED,
    )
