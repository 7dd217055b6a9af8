"""Form arguments as xend's ``Args.FormFn`` read them.

xend dropped form fields its operation did not name, then raised
``ArgError('Missing parameter: <field>')`` for the first named field that was absent
(HTTP 500, ``(xend.err ...)``). Which fields ``op=migrate`` names changed across Xen
releases (SrvDomain.py; libvirt's xend driver records the changesets):

* Xen 3.0-3.2: destination, live, resource, port
* Xen 3.3-3.4: destination, live, port, node, ssl (resource dropped in c/s 17553,
  ssl added in 17709, node in 17753)
* Xen 4.x:     destination, live, port, node, ssl, change_home_server (c/s 20326)

So the 2007 libvirt request (op, destination, live, resource, port) suffices for a
3.x-before-3.3 server only; later libvirt sent every field so that any xend accepted it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from xendsim.errors import ArgError

ArgType = Literal["int", "str", "bool"]
ArgSpec = Sequence[tuple[str, ArgType]]
Value = int | str | bool

MIGRATE_ARGS: dict[str, ArgSpec] = {
    "3.1": [("destination", "str"), ("live", "int"), ("resource", "int"), ("port", "int")],
    "3.4": [
        ("destination", "str"),
        ("live", "int"),
        ("port", "int"),
        ("node", "int"),
        ("ssl", "int"),
    ],
    "4.0": [
        ("destination", "str"),
        ("live", "int"),
        ("port", "int"),
        ("node", "int"),
        ("ssl", "int"),
        ("change_home_server", "bool"),
    ],
}

# Xen 3.x versions share one arg list up to 3.2 and another from 3.3 on.
VERSION_ALIASES = {
    "3.0": "3.1",
    "3.2": "3.1",
    "3.3": "3.4",
    "4.1": "4.0",
    "4.2": "4.0",
    "4.3": "4.0",
    "4.4": "4.0",
}


def migrate_args(version: str) -> ArgSpec:
    key = VERSION_ALIASES.get(version, version)
    if key not in MIGRATE_ARGS:
        known = sorted(set(MIGRATE_ARGS) | set(VERSION_ALIASES))
        raise ValueError(f"unknown xend version {version!r}; known: {', '.join(known)}")
    return MIGRATE_ARGS[key]


def parse_form(form: Mapping[str, Sequence[str]], spec: ArgSpec) -> dict[str, Value]:
    named = dict(spec)
    values: dict[str, Value] = {}
    for key, given in form.items():
        if key not in named or not given:
            continue
        if len(given) > 1:
            raise ArgError(f"Too many values for {key}")
        values[key] = _coerce(named[key], given[0])
    for key, _ in spec:
        if key not in values:
            raise ArgError(f"Missing parameter: {key}")
    return values


def _coerce(kind: ArgType, text: str) -> Value:
    if kind == "str":
        return text
    if kind == "bool" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        number = int(text)
    except ValueError:
        # The message Python's int() gave, which xend passed through verbatim.
        raise ArgError(f"invalid literal for int() with base 10: {text!r}") from None
    return bool(number) if kind == "bool" else number
