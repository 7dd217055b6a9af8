"""The driver table, one line per driver, and what a driver declares to the resource model.

A driver's declaration says what the model needs from it: the fields it adds to a
HypervisorHost's spec, the URI schemes it opens, its own parameters, and where its Driver class
is. The host model, the rulebook, the CRD and the README's driver table are generated from the
declarations. A declaration lives in its driver's folder but imports only controller.api and
pydantic, so building the CRD or parsing a host never imports a driver (nor libvirt-python);
the Driver itself, with its Capabilities, is imported by controller.backends.registry when a
host uses it. The table names declarations by module, as the model sits below the backends.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from pydantic.alias_generators import to_camel

from controller.api.params import SHARED_PARAMS, ParamType

DRIVERS: dict[str, str] = {
    "test": "controller.backends.test.declaration",
    "xend": "controller.backends.xend.declaration",
    "libvirt": "controller.backends.libvirt.declaration",
}


@dataclass(frozen=True)
class HostOption:
    """A field of HypervisorHost's spec that only hosts of the declaring driver may set."""

    name: str  # as in Python; the wire name is its camelCase
    annotation: Any
    default: Any
    example: Any  # a value that sets it: the rulebook's document breaking "only for this driver"
    # A block whose fields are the driver's options themselves (the test driver reads `domains`,
    # not `test.domains`); else the option is passed under its wire name.
    spread: bool = False

    @property
    def wire(self) -> str:
        return to_camel(self.name)


@dataclass(frozen=True)
class DriverDeclaration:
    name: str
    driver: str  # "module:Class" of its Driver (controller/backends/protocol.py)
    summary: str  # for the README's driver table
    uri_schemes: tuple[str, ...]  # the ones it opens; empty when its library decides (libvirt)
    uri_example: str
    host_options: tuple[HostOption, ...] = ()
    params: Mapping[str, ParamType] = field(default_factory=dict)  # its own, beside SHARED_PARAMS


def load(table: Mapping[str, str]) -> dict[str, DriverDeclaration]:
    """The declarations a table names, checked to fit together."""
    found: dict[str, DriverDeclaration] = {}
    for name, module in table.items():
        declaration = getattr(importlib.import_module(module), "DECLARATION", None)
        if not isinstance(declaration, DriverDeclaration):
            # Also what a declaration imported before controller.api sees: the api is half-built then.
            raise ImportError(f"{module} has no DECLARATION (a controller.api.drivers.DriverDeclaration)")
        if declaration.name != name:
            raise ValueError(f"the table names {module} {name!r}, but it declares {declaration.name!r}")
        found[name] = declaration
    _check_disjoint(found)
    return found


def _check_disjoint(declarations: Mapping[str, DriverDeclaration]) -> None:
    """Two drivers claiming one host field or one parameter would make one of them wrong."""
    options: dict[str, str] = {}
    params: dict[str, str] = dict.fromkeys(SHARED_PARAMS, "the shared parameters")
    for d in declarations.values():
        for option in d.host_options:
            if option.name in options:
                raise ValueError(f"host field {option.wire} is declared by {options[option.name]} and {d.name}")
            options[option.name] = d.name
        for param in d.params:
            if param in params:
                raise ValueError(f"parameter {param} is declared by {params[param]} and {d.name}")
            params[param] = d.name


@cache
def declarations() -> dict[str, DriverDeclaration]:
    """The table's declarations, loaded on first use (by the host model and the rulebook)."""
    return load(DRIVERS)


def known_params(declarations: Mapping[str, DriverDeclaration]) -> dict[str, ParamType]:
    """Every parameter whose type and range the model checks: the shared ones and the drivers' own."""
    found = dict(SHARED_PARAMS)
    for d in declarations.values():
        found.update(d.params)
    return found
