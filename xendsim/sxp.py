"""xend's S-expressions (SXP): the body format of every xend reply.

xend printed atoms bare when they hold no special characters and otherwise as a
Python ``repr`` (single quotes), e.g. ``(xend.err 'Missing parameter: node')``; its
parser (and libvirt's) accepted single- and double-quoted strings. Atoms are all
strings on the wire: xend never typed them, so ``decode`` returns ``str`` leaves and
callers convert, as xend's ``sxp.child_value`` users did.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeAlias

import sexpdata

MIME_TYPE = "application/sxp"

# What decode returns: a string atom or a list of them.
Sxp: TypeAlias = str | list["Sxp"]
# What encode accepts: numbers are printed with str(), as xend's sxp.show did.
Encodable: TypeAlias = str | int | float | Sequence["Encodable"]

_BARE_ATOM = re.compile(r"[A-Za-z0-9_.:@/+\-]+")
_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


class SxpError(ValueError):
    """The text is not one well-formed S-expression."""


def encode(value: Encodable) -> str:
    if isinstance(value, bool):
        # bool is an int subclass; xend printed truth values as 0/1.
        return "1" if value else "0"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value if _BARE_ATOM.fullmatch(value) else _quote(value)
    return "(" + " ".join(encode(item) for item in value) + ")"


def _quote(text: str) -> str:
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in text) + "'"


def error(message: str) -> str:
    """The body xend sent for a failed operation."""
    return encode(["xend.err", message])


class _StringAtoms(sexpdata.Parser):  # type: ignore[misc]
    """sexpdata's parser, keeping every atom a string (no nil/t/number guessing)."""

    def atom(self, token: str) -> str:
        return token


def decode(text: str) -> Sxp:
    """Parse exactly one S-expression."""
    values = decode_all(text)
    if len(values) != 1:
        raise SxpError(f"expected one S-expression, got {len(values)}")
    return values[0]


def decode_all(text: str) -> list[Sxp]:
    try:
        parsed = _StringAtoms(_double_quoted(text), line_comment="\0").parse()
    except SxpError:
        raise
    except Exception as exc:  # sexpdata raises several unrelated exception types
        raise SxpError(f"malformed S-expression: {exc}") from exc
    return [_plain(value) for value in parsed]


def _double_quoted(text: str) -> str:
    """Rewrite xend's 'single-quoted' strings as "double-quoted" ones for sexpdata.

    sexpdata reads a single quote as Lisp's quote operator, which xend never used.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            end = _string_end(text, i, '"')
            out.append(text[i : end + 1])
            i = end + 1
        elif ch == "'":
            end = _string_end(text, i, "'")
            body = _unescape(text[i + 1 : end])
            out.append('"' + sexpdata.String.quote(body) + '"')
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _string_end(text: str, start: int, quote: str) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    raise SxpError(f"unterminated string starting at offset {start}")


_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            out.append(_UNESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _plain(value: object) -> Sxp:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, sexpdata.Quoted):
        raise SxpError("quote syntax is not part of SXP")
    if isinstance(value, str):
        return str(value)
    raise SxpError(f"unexpected atom {value!r}")


def name(value: Sxp) -> str | None:
    """The head of a list (``domain`` for ``(domain ...)``), like xend's sxp.name."""
    if isinstance(value, str):
        return value
    return value[0] if value and isinstance(value[0], str) else None


def child_value(value: Sxp, key: str, default: str | None = None) -> str | None:
    """The value of ``(key value)`` among the children of a list."""
    if isinstance(value, list):
        for child in value[1:]:
            if isinstance(child, list) and len(child) >= 2 and child[0] == key:
                atom = child[1]
                if isinstance(atom, str):
                    return atom
    return default


def to_dict(value: Sxp) -> dict[str, str]:
    """The ``(key value)`` children of a list whose values are atoms."""
    result: dict[str, str] = {}
    if isinstance(value, list):
        for child in value[1:]:
            if isinstance(child, list) and len(child) == 2 and isinstance(child[0], str):
                if isinstance(child[1], str):
                    result[child[0]] = child[1]
    return result
