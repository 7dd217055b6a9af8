"""Turning validation failures into one line per field, never a pydantic dump."""

import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SpecError(ValueError):
    """A document that cannot be run; each problem names its field and why."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def field_path(loc: Iterable[int | str], prefix: str = "", maps: frozenset[str] = frozenset()) -> str:
    """A field as the API server names it: `spec.flags[1]`, a map's entry `spec.params[xen.port]`."""
    path = prefix
    key_next = False
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("function-") or part in ("int", "str"):
            # pydantic's internal branch labels (unions, validators) are not fields.
            continue
        elif key_next or (not IDENT.match(part) and path):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
        key_next = isinstance(part, str) and part in maps and not key_next
    return path or "(document)"


SHOWN = 60  # characters of a refused value repeated in a message: enough to recognise it


def shown(value: Any) -> str:
    """A refused value as a message repeats it: cut short, since the user has it (a 70 kB string,
    a map of 3,000 parameters) and a status message or an apply-time refusal must stay readable."""
    text = repr(value)
    return text if len(text) <= SHOWN else f"{text[: SHOWN - 1]}… ({len(text)} characters)"


def _message(error: Any) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "enum":
        return f"{shown(value)} is not one of: {ctx.get('expected', '')}".replace("'", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}, got {shown(value)}"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg'][0].lower()}{error['msg'][1:]} (got {shown(value)})"


def explain(exc: ValidationError, prefix: str = "", maps: frozenset[str] = frozenset()) -> SpecError:
    # A union reports once per branch; the first says enough about the field.
    by_field: dict[str, str] = {}
    for error in exc.errors():
        by_field.setdefault(field_path(error["loc"], prefix, maps), _message(error))
    return SpecError([f"{path}: {why}" for path, why in by_field.items()])
