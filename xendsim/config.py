"""How one simulated host is set up: from keyword arguments, a YAML file, or the CLI."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TypeAlias

from xendsim.args import migrate_args
from xendsim.faults import Faults
from xendsim.state import DomainSpec

Address = tuple[str, int]
DomainLike: TypeAlias = DomainSpec | Mapping[str, object] | str


@dataclass
class HostConfig:
    """
    version: the xend release whose ``op=migrate`` argument list is enforced
        (see ``args.MIGRATE_ARGS``) and reported as xen_major/xen_minor.
    relocation_default_port / relocation_ssl_port: where ``port=0`` sends a migration
        (xend used its own xend-relocation-port / xend-relocation-ssl-port: 8002/8003).
    memory_scale: bytes streamed per MiB of domain memory, so that durations stay short.
    link_mbps: pace of the stream when the request gave no ``resource`` (or 0).
    """

    name: str = "xend"
    hostname: str | None = None
    http: Address = ("127.0.0.1", 0)
    relocation: Address | None = ("127.0.0.1", 0)
    control: Address | None = None
    version: str = "3.1"
    relocation_default_port: int = 8002
    relocation_ssl_port: int = 8003
    memory_scale: int = 4096
    link_mbps: float = 8.0
    total_memory: int = 16384
    nr_cpus: int = 4
    domains: list[DomainSpec] = field(default_factory=list)
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        migrate_args(self.version)  # fail early on an unknown version
        if self.memory_scale < 1 or self.link_mbps <= 0:
            raise ValueError("memory_scale and link_mbps must be positive")

    @property
    def node_hostname(self) -> str:
        """What ``GET /xend/node`` calls this host: where peers can reach it."""
        return self.hostname or self.http[0]

    @classmethod
    def build(cls, **options: object) -> HostConfig:
        """Keyword options as in the YAML file; domains and faults may be plain data."""
        known = {f.name for f in fields(cls)}
        unknown = set(options) - known
        if unknown:
            raise ValueError(f"unknown host option(s): {', '.join(sorted(unknown))}")
        values = dict(options)
        for key in ("http", "relocation", "control"):
            value = values.get(key)
            if isinstance(value, str):
                values[key] = parse_address(value)
            elif isinstance(value, list | tuple):
                values[key] = (str(value[0]), int(value[1]))
        values["domains"] = [domain_spec(d) for d in values.get("domains") or []]  # type: ignore[attr-defined]
        faults = values.get("faults")
        if isinstance(faults, Mapping):
            values["faults"] = Faults.validated(faults)
        return cls(**values)  # type: ignore[arg-type]


def domain_spec(value: DomainLike) -> DomainSpec:
    if isinstance(value, DomainSpec):
        return value
    if isinstance(value, str):
        return DomainSpec.parse(value)
    return DomainSpec.from_mapping(value)


def domain_specs(values: Sequence[DomainLike]) -> list[DomainSpec]:
    return [domain_spec(v) for v in values]


def parse_address(text: str) -> Address:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)
