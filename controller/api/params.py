"""Typed migration parameters: libvirt's names, their types and ranges.

A parameter no table knows is not an error here: it is a question for the driver, which answers
NoSupport before anything moves (as the 2007 proposal's Xen driver did). SHARED_PARAMS are
libvirt's typed-parameter names, which any driver may take (its Capabilities say which); a
driver's own parameters (xend's `xen.*`) are in its declaration (controller/api/drivers.py).
"""

import re
from dataclasses import dataclass

from controller.api.errors import shown

ParamValue = int | str

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


@dataclass(frozen=True)
class ParamType:
    kind: type[int] | type[str]
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None  # for str params: each comma-separated item
    unit: str = ""

    def check(self, value: ParamValue) -> str | None:
        """Why the value is wrong, or None."""
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return f"must be an integer{' (' + self.unit + ')' if self.unit else ''}, got {shown(value)}"
            if self.minimum is not None and value < self.minimum:
                return f"must be at least {self.minimum}, got {value}"
            if self.maximum is not None and value > self.maximum:
                return f"must be at most {self.maximum}, got {value}"
            return None
        if not isinstance(value, str):
            return f"must be a string, got {shown(value)}"
        if self.choices is not None:
            bad = [item for item in value.split(",") if item not in self.choices]
            if bad:
                return f"{bad[0]!r} is not one of {', '.join(self.choices)}"
        return None


SHARED_PARAMS: dict[str, ParamType] = {
    "bandwidth": ParamType(int, 0, unit="MiB/s"),
    "bandwidth.postcopy": ParamType(int, 0, unit="MiB/s"),
    "downtime": ParamType(int, 1, unit="ms"),
    "parallel.connections": ParamType(int, 1, 255),
    "auto_converge.initial": ParamType(int, 0, 100, unit="%"),
    "auto_converge.increment": ParamType(int, 0, 100, unit="%"),
    "compression": ParamType(str, choices=("xbzrle", "mt", "zlib", "zstd")),
    "compression.mt.level": ParamType(int, 0, 9),
    "compression.mt.threads": ParamType(int, 1, 255),
    "compression.mt.dthreads": ParamType(int, 1, 255),
    "compression.xbzrle.cache": ParamType(int, 0, unit="bytes"),
    "compression.zlib.level": ParamType(int, 0, 9),
    "compression.zstd.level": ParamType(int, 0, 20),
    "listen_address": ParamType(str),
    "migrate_disks": ParamType(str),
    "disks_port": ParamType(int, 0, 65535),
    "disks_uri": ParamType(str),
    "tls.destination": ParamType(str),
    "graphics_uri": ParamType(str),
    "destination_xml": ParamType(str),
    "persistent_xml": ParamType(str),
}

# These have first-class spec fields; two ways to say one thing would drift apart.
SPEC_FIELD_FOR: dict[str, str] = {
    "destination_name": "dname",
    "migrate_uri": "hostname",
}

# Parameters that may change while the migration runs.
LIVE_TUNABLE = frozenset({"bandwidth", "downtime"})
