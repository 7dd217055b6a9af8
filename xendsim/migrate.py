"""The source side of a migration: what xend's domain_migrate and XendCheckpoint.save did."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass

from xendsim import stream
from xendsim.errors import XendError, XendInvalidDomain
from xendsim.node import Node
from xendsim.state import MIGRATING_PREFIX, Domain, Power
from xendsim.sxp import Encodable, Sxp, name

CHUNK = 16 * 1024
CONNECT_TIMEOUT = 10.0
NAME_BACK_WAIT = 2.0


@dataclass
class Request:
    destination: str
    port: int
    live: bool
    ssl: bool
    resource_mbps: int


def check_migratable(domain: Domain) -> None:
    if domain.is_dom0:
        raise XendError(f"Cannot migrate privileged domain {domain.domid}")
    if not domain.state.active:
        raise XendError("Domain is not running")
    if domain.migrating:
        raise XendError("Domain is already being migrated")


async def migrate(node: Node, domain: Domain, request: Request) -> None:
    """Stream the domain to the destination's relocation listener; block until done.

    On success the domain is gone from here (a managed one stays defined, halted);
    on failure it runs here under its own name again.
    """
    check_migratable(domain)
    domain.migrating = True
    try:
        await _migrate(node, domain, request)
    finally:
        domain.migrating = False


async def _migrate(node: Node, domain: Domain, request: Request) -> None:
    port = request.port or (node.config.relocation_ssl_port if request.ssl else node.config.relocation_default_port)
    where = f"{request.destination}:{port}"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(request.destination, port), CONNECT_TIMEOUT)
    except TimeoutError as exc:
        raise XendError("can't connect: timed out") from exc
    except OSError as exc:
        # asyncio words its own strerror; xend showed the system's ("Connection refused").
        raise XendError(f"can't connect: {os.strerror(exc.errno) if exc.errno else exc}") from exc
    try:
        await _handshake(reader, writer, where)
        await _stream_domain(node, domain, request, reader, writer, where)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _handshake(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, where: str) -> None:
    try:
        writer.write(stream.message(["receive"]))
        await writer.drain()
        reply = await stream.read_message(reader)
    except (OSError, stream.ProtocolError) as exc:
        raise XendError(f"Migration refused by {where}: {exc}") from exc
    if reply is None:
        raise XendError(f"Migration refused by {where}: connection closed")
    if name(reply) != "ready":
        raise XendError(f"Migration refused by {where}: {stream.err_text(reply)}")


async def _stream_domain(
    node: Node,
    domain: Domain,
    request: Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    where: str,
) -> None:
    # Checked again: the handshake yielded, and the domain may have changed meanwhile.
    if node.state.get(domain.name) is not domain:
        raise XendInvalidDomain(domain.name)
    if not domain.state.active:
        raise XendError("Domain is not running")
    original_name, original_state = domain.name, domain.state
    # xend renamed the source so that a migration to the same host has no name clash.
    node.state.rename(domain, MIGRATING_PREFIX + original_name)
    if not request.live:
        domain.state = Power.PAUSED
    try:
        total = domain.memory * node.config.memory_scale
        config: list[Encodable] = [
            "domain",
            ["name", original_name],
            ["uuid", domain.uuid],
            ["memory", domain.memory],
            ["maxmem", domain.maxmem],
            ["vcpus", domain.vcpus],
        ]
        writer.write(stream.header(config, total))
        # The destination may answer early (it refuses a domain it has no memory for),
        # so its reply is awaited alongside the stream rather than after it.
        reply = asyncio.ensure_future(stream.read_message(reader))
        try:
            mbps = request.resource_mbps or node.config.link_mbps
            await _send_image(node, writer, reply, total, mbps, where)
            ack = await reply
        except (OSError, stream.ProtocolError) as exc:
            raise XendError(
                f"Migration to {where} failed: {(exc.strerror if isinstance(exc, OSError) else None) or exc}"
            ) from exc
        finally:
            reply.cancel()
        if ack is None:
            raise XendError(f"Migration to {where} failed: destination closed the connection")
        if name(ack) != "ok":
            raise XendError(f"Migration to {where} failed: {stream.err_text(ack)}")
    except asyncio.CancelledError:
        _take_name_if_free(node, domain, original_name)
        domain.state = original_state
        raise
    except BaseException:
        await _give_back(node, domain, original_name)
        domain.state = original_state
        raise
    if domain.managed:
        await _give_back(node, domain, original_name)
    node.state.destroy(domain)


async def _send_image(
    node: Node,
    writer: asyncio.StreamWriter,
    reply: asyncio.Future[Sxp | None],
    total: int,
    mbps: float,
    where: str,
) -> None:
    """Write the image, paced at ``mbps``; stop early if the destination has spoken."""
    bytes_per_second = mbps * 1_000_000 / 8
    drop_at = node.faults.drop_at
    drop_point = None if drop_at is None else int(drop_at * total)
    chunk = bytes(CHUNK)
    sent = 0
    # The loop's clock, not the wall's: under a fake clock (looptime) the pace holds.
    clock = asyncio.get_running_loop().time
    started = clock()
    try:
        while sent < total and not reply.done():
            if drop_point is not None and sent >= drop_point:
                break
            size = min(CHUNK, total - sent)
            if drop_point is not None:
                size = min(size, drop_point - sent)
            writer.write(chunk[:size])
            await writer.drain()
            sent += size
            ahead = sent / bytes_per_second - (clock() - started)
            if ahead > 0:
                await asyncio.wait([reply], timeout=ahead)
    except OSError:
        if not reply.done():
            raise
    if drop_point is not None and sent >= drop_point and not reply.done():
        writer.transport.abort()
        raise XendError(f"Migration to {where} failed: connection dropped after {sent} of {total} bytes")


async def _give_back(node: Node, domain: Domain, original_name: str) -> None:
    """Rename the domain back once its name is free.

    After a failed migration to this same host, the incoming copy holds the name
    until the receiving side notices the failure and removes it.
    """
    clock = asyncio.get_running_loop().time
    deadline = clock() + NAME_BACK_WAIT
    while True:
        holder = node.state.get(original_name)
        if holder is None or holder is domain or clock() >= deadline:
            break
        await asyncio.sleep(0.02)
    _take_name_if_free(node, domain, original_name)


def _take_name_if_free(node: Node, domain: Domain, original_name: str) -> None:
    if node.state.get(original_name) is None and node.state.get(domain.name) is domain:
        node.state.rename(domain, original_name)
