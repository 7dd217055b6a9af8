"""The relocation wire protocol between two xends (TCP, relocation port).

    source -> dest   (receive)\\n
    dest -> source   (ready receive)\\n                     or (err (type T) (value 'why'))\\n
    source -> dest   LinuxGuestRecord | !i config length | config SXP
                     | !Q image length | image bytes
    dest -> source   (ok)\\n once the domain runs            or (err (type T) (value 'why'))\\n

The signature and length-prefixed config are XendCheckpoint's; the image stands for
xc_save's page stream, its length following the domain's memory.
"""

from __future__ import annotations

import asyncio
import struct

from xendsim import sxp

SIGNATURE = b"LinuxGuestRecord"
_CONFIG_LENGTH = struct.Struct("!i")
_IMAGE_LENGTH = struct.Struct("!Q")
MAX_CONFIG = 1 << 20
MAX_MESSAGE = 1 << 16


class ProtocolError(Exception):
    """The peer sent something that is not this protocol."""


def message(value: sxp.Encodable) -> bytes:
    return (sxp.encode(value) + "\n").encode()


def err_message(text: str, kind: str = "XendError") -> bytes:
    return message(["err", ["type", kind], ["value", text]])


def err_text(reply: sxp.Sxp) -> str:
    return sxp.child_value(reply, "value") or sxp.encode(reply)


async def read_message(reader: asyncio.StreamReader) -> sxp.Sxp | None:
    """One newline-terminated S-expression; None if the peer closed first."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        line = exc.partial
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError("message too long") from exc
    try:
        return sxp.decode(line.decode())
    except (sxp.SxpError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not an S-expression: {line[:80]!r}") from exc


def header(config: sxp.Encodable, image_bytes: int) -> bytes:
    body = sxp.encode(config).encode()
    return SIGNATURE + _CONFIG_LENGTH.pack(len(body)) + body + _IMAGE_LENGTH.pack(image_bytes)


async def read_header(reader: asyncio.StreamReader) -> tuple[sxp.Sxp, int]:
    """The domain config and the image length that follows it."""
    signature = await reader.readexactly(len(SIGNATURE))
    if signature != SIGNATURE:
        raise ProtocolError("not a valid guest state file: signature mismatch")
    (length,) = _CONFIG_LENGTH.unpack(await reader.readexactly(_CONFIG_LENGTH.size))
    if not 0 < length <= MAX_CONFIG:
        raise ProtocolError(f"bad config length {length}")
    config_text = (await reader.readexactly(length)).decode()
    try:
        config = sxp.decode(config_text)
    except sxp.SxpError as exc:
        raise ProtocolError(f"bad config: {exc}") from exc
    (image_bytes,) = _IMAGE_LENGTH.unpack(await reader.readexactly(_IMAGE_LENGTH.size))
    return config, image_bytes
