"""Reading xend's replies: S-expressions (``application/sxp``).

The backend's own small reader, so that it does not depend on the test xend. xend printed
strings with special characters as Python reprs (``'...'``, sometimes ``"..."``) and never
used Lisp's quote, so single-quoted strings are turned into double-quoted ones before
sexpdata parses the text; every atom stays a string, as xend's own ``sxp`` module read them.
"""

from __future__ import annotations

from typing import TypeAlias

import sexpdata

Sxp: TypeAlias = str | list["Sxp"]


class SxpError(ValueError):
    """Not a well-formed S-expression."""


class _StringAtoms(sexpdata.Parser):  # type: ignore[misc]
    def atom(self, token: str) -> str:
        return token


def parse(text: str) -> list[Sxp]:
    """Every S-expression in the text (a body may be empty)."""
    try:
        parsed = _StringAtoms(_double_quoted(text), line_comment="\0").parse()
    except SxpError:
        raise
    except Exception as exc:  # sexpdata raises assorted exception types
        raise SxpError(f"malformed S-expression: {exc}") from exc
    return [_plain(value) for value in parsed]


def _double_quoted(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "'\"":
            body, i = _string(text, i)
            out.append('"' + sexpdata.String.quote(body) + '"')
        else:
            out.append(ch)
            i += 1
    return "".join(out)


_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _string(text: str, start: int) -> tuple[str, int]:
    """The unescaped body of the string opening at ``start``, and the index after it."""
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(_UNESCAPES.get(text[i + 1], text[i + 1]))
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise SxpError(f"unterminated string at offset {start}")


def _plain(value: object) -> Sxp:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, str):
        return str(value)
    raise SxpError(f"unexpected token {value!r}")


def head(value: Sxp) -> str | None:
    """``domain`` for ``(domain ...)``."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        return value[0]
    return None


def fields(value: Sxp) -> dict[str, str]:
    """The ``(key value)`` children of a list whose values are atoms; the first of a repeated key wins."""
    result: dict[str, str] = {}
    if isinstance(value, list):
        for child in value[1:]:
            if isinstance(child, list) and len(child) >= 2 and isinstance(child[0], str) and isinstance(child[1], str):
                result.setdefault(child[0], child[1])
    return result


def error_text(body: str) -> str | None:
    """The message of ``(xend.err '<message>')`` anywhere in a reply, if there is one."""
    try:
        values = parse(body)
    except SxpError:
        return None
    for value in values:
        if head(value) == "xend.err" and isinstance(value, list):
            return " ".join(item for item in value[1:] if isinstance(item, str)) or "xend.err"
    return None
