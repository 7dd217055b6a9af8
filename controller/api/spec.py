"""DomainMigration.spec: what to move, from where, to where, and how."""

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictInt, StrictStr

from controller.api.base import Model, empty_list
from controller.api.convergence import MAX_STEPS, ConvergenceStep
from controller.api.enums import MigrationFlag
from controller.api.rules import MIGRATION_SPEC, MIGRATION_SPEC_SETS

# The two ends of a migration, named as the spec names them; the one word for each everywhere.
Side = Literal["source", "destination"]
SIDES: tuple[Side, Side] = ("source", "destination")

HostName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.\-_]*[A-Za-z0-9])?$")]
DomainName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^/\s]([^/]*[^/\s])?$")]


class Timeouts(Model):
    """KubeVirt's two clocks: a budget per GiB of guest memory, and a limit on no progress."""

    completion_per_gib: Annotated[StrictInt, Field(ge=1)] | None = Field(None, alias="completionPerGiB")
    progress: Annotated[StrictInt, Field(ge=1)] | None = None


class DomainMigrationSpec(Model):
    domain: DomainName
    source: HostName
    # Omitted: the operator (or `domig migrate` over a hosts file) chooses a host with room,
    # among those whose labels match destinationSelector.
    destination: HostName | None = None
    destination_selector: dict[str, str] | None = Field(None, max_length=32)
    flags: list[MigrationFlag] = Field(default_factory=empty_list, max_length=len(MigrationFlag))
    dname: DomainName | None = None
    hostname: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    params: dict[str, StrictInt | StrictStr] = Field(default_factory=dict, max_length=64)
    abort: StrictBool = False
    # Run the pre-flight checks only, report what would happen, and move nothing.
    dry_run: StrictBool = False
    # Finish now: post-copy when the migration may, else pause the guest so the rest fits.
    force_complete: StrictBool = False
    timeouts: Timeouts = Field(default_factory=Timeouts)
    # None: the policy's schedule, or the default one; []: no schedule at all.
    convergence: list[ConvergenceStep] | None = Field(None, max_length=MAX_STEPS)

    RULES = MIGRATION_SPEC
    SETS = MIGRATION_SPEC_SETS

    def has(self, flag: MigrationFlag) -> bool:
        return flag in self.flags

    @property
    def target_name(self) -> str:
        return self.dname or self.domain

    @property
    def renames(self) -> bool:
        return self.dname is not None and self.dname != self.domain
