"""DomainMigration.spec: what to move, from where, to where, and how."""

from typing import Annotated, Any

from pydantic import Field, StrictInt, StrictStr, field_validator

from controller.api.base import Model
from controller.api.enums import MigrationFlag
from controller.api.params import check_param

HostName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.\-_]*[A-Za-z0-9])?$")]
DomainName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\s]([^/]*[^/\s])?$")]

# Pairs libvirt refuses together, with its reason.
CONFLICTS: list[tuple[MigrationFlag, MigrationFlag, str]] = [
    (MigrationFlag.offline, MigrationFlag.live, "an offline migration moves no running state"),
    (MigrationFlag.offline, MigrationFlag.postCopy, "post-copy needs a running domain"),
    (MigrationFlag.offline, MigrationFlag.autoConverge, "auto-converge throttles a running domain"),
    (MigrationFlag.nonSharedDisk, MigrationFlag.nonSharedInc, "choose a full or an incremental disk copy"),
]


class Timeouts(Model):
    """KubeVirt's two clocks: a budget per GiB of guest memory, and a limit on no progress."""

    completion_per_gi_b: Annotated[int, Field(ge=1)] | None = None
    progress: Annotated[int, Field(ge=1)] | None = None


class DomainMigrationSpec(Model):
    domain: DomainName
    source: HostName
    destination: HostName
    flags: list[MigrationFlag] = Field(default_factory=list, max_length=len(MigrationFlag))
    dname: DomainName | None = None
    hostname: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    params: dict[str, StrictInt | StrictStr] = Field(default_factory=dict, max_length=64)
    abort: bool = False
    timeouts: Timeouts = Field(default_factory=Timeouts)

    @field_validator("flags")
    @classmethod
    def _flags_once(cls, flags: list[MigrationFlag]) -> list[MigrationFlag]:
        seen: set[MigrationFlag] = set()
        for flag in flags:
            if flag in seen:
                raise ValueError(f"{flag.value} is listed twice")
            seen.add(flag)
        return flags

    @classmethod
    def raw_problems(cls, data: Any) -> list[tuple[str, str]]:
        params = data.get("params") if isinstance(data, dict) else None
        if not isinstance(params, dict):
            return []
        found = []
        for name, value in params.items():
            why = check_param(str(name), value)
            if why:
                found.append((f"params.{name}", why))
        return found

    def problems(self) -> list[tuple[str, str]]:
        """What is wrong across fields: (field, why) pairs."""
        found: list[tuple[str, str]] = []
        flags = set(self.flags)
        for a, b, why in CONFLICTS:
            if a in flags and b in flags:
                found.append(("flags", f"{a.value} and {b.value} cannot be combined: {why}"))
        if MigrationFlag.offline in flags and MigrationFlag.persistDest not in flags:
            found.append(("flags", "offline needs persistDest: an offline migration only moves the definition"))
        if self.source == self.destination and not self.renames:
            found.append(("destination", "is the source host: set dname to migrate to the same host"))
        return found

    def has(self, flag: MigrationFlag) -> bool:
        return flag in self.flags

    @property
    def target_name(self) -> str:
        return self.dname or self.domain

    @property
    def renames(self) -> bool:
        return self.dname is not None and self.dname != self.domain
