"""The HypervisorHost document: how to reach one host, and what it allows."""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, StrictBool, StrictInt, create_model

from controller.api.base import Model, empty_list
from controller.api.drivers import DriverDeclaration, declarations
from controller.api.resource import ObjectMeta
from controller.api.rules import host_rules
from controller.api.status import Condition


class SecretRef(Model):
    name: str = Field(min_length=1)
    namespace: str | None = None


class HostLimits(Model):
    max_outbound: Annotated[StrictInt, Field(ge=0)] | None = None
    max_inbound: Annotated[StrictInt, Field(ge=0)] | None = None


class HostSpecBase(Model):
    """What every host's spec has; each driver's own fields come from its declaration."""

    driver: str  # one of the table's drivers: the generated model narrows it
    uri: str = Field(min_length=1)
    migration_address: str | None = None
    credentials_secret_ref: SecretRef | None = None
    limits: HostLimits = Field(default_factory=HostLimits)
    allowed_namespaces: list[str] | None = None
    # No new migrations to it (they wait Pending); those under way go on, and domains may leave.
    maintenance: StrictBool = False
    # Empty it: one DomainMigration per running domain, destinations chosen by the operator;
    # back to false cancels (what runs is aborted). Implies maintenance while true.
    evacuate: StrictBool = False

    @property
    def closed(self) -> bool:
        """No new migrations to it."""
        return self.maintenance or self.evacuate

    DRIVERS: ClassVar[Mapping[str, DriverDeclaration]] = {}

    def driver_options(self) -> dict[str, Any]:
        """This host's driver's own fields, in their wire form, as the driver reads them."""
        found: dict[str, Any] = {}
        for option in self.DRIVERS[self.driver].host_options:
            value = getattr(self, option.name)
            if value == option.default:
                continue
            wire = value.model_dump(mode="json", by_alias=True) if isinstance(value, Model) else value
            if option.spread:
                found.update(wire)
            else:
                found[option.wire] = wire
        return found


def host_spec_model(drivers: Mapping[str, DriverDeclaration]) -> type[HostSpecBase]:
    """HypervisorHost's spec for a driver table: the shared fields, the drivers' own, their rules."""
    names: Any = Literal.__getitem__(tuple(drivers))
    fields: dict[str, Any] = {"driver": (names, ...)}
    for driver in drivers.values():
        for option in driver.host_options:
            if option.name in HostSpecBase.model_fields:
                raise ValueError(f"the {driver.name} driver declares {option.wire}, which every host has")
            fields[option.name] = (option.annotation, option.default)
    model = create_model("HypervisorHostSpec", __base__=HostSpecBase, __module__=__name__, **fields)
    model.RULES = host_rules(drivers)
    model.DRIVERS = dict(drivers)
    return model


# Generated, so the type checker sees the shared fields only: a driver's own are read through
# driver_options(), by the driver.
if TYPE_CHECKING:
    HypervisorHostSpec = HostSpecBase
else:
    HypervisorHostSpec = host_spec_model(declarations())


class EvacuatedDomain(Model):
    domain: str
    migration: str  # the DomainMigration's name (in the evacuation's namespace)
    phase: str  # the DomainMigration's phase; Unplaceable while no host fits it
    destination: str | None = None
    message: str = ""


class Evacuation(Model):
    """spec.evacuate's progress: counted from the DomainMigrations it made, each by name."""

    # Running; Completed (the host runs no domain); Incomplete (only what cannot move is left,
    # said in message); Cancelled (spec.evacuate went back to false: what ran was aborted).
    phase: Literal["Running", "Completed", "Incomplete", "Cancelled"]
    started: str
    namespace: str  # where its DomainMigrations are
    total: int = 0
    done: int = 0
    in_flight: int = 0
    failed: int = 0
    unplaceable: int = 0
    # Since when nothing has been in flight with domains left: "Incomplete" only once that lasts
    # (a host's free memory is counted conservatively for a moment after each arrival).
    idle_since: str | None = None
    message: str = ""
    migrations: list[EvacuatedDomain] = Field(default_factory=empty_list)


class HypervisorHostStatus(Model):
    """Kept fresh by the operator's probe timer."""

    reachable: bool | None = None
    hostname: str | None = None
    hypervisor_version: str | None = None
    domain_count: int | None = None
    # What the host has, as its driver tells (absent where it cannot), at the last probe that reached it.
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    cpus: int | None = None
    cpu_model: str | None = None
    running_domains: int | None = None
    # This operator's migrations past admission and not finished, to and from the host.
    migrations_in: int | None = None
    migrations_out: int | None = None
    last_probe_time: str | None = None
    message: str | None = None
    evacuation: Evacuation | None = None
    conditions: list[Condition] = Field(default_factory=empty_list)


class HypervisorHost(Model):
    api_version: Literal["domig.dev/v1alpha1"] = "domig.dev/v1alpha1"
    kind: Literal["HypervisorHost"] = "HypervisorHost"
    metadata: ObjectMeta
    spec: HypervisorHostSpec
    status: HypervisorHostStatus = Field(default_factory=HypervisorHostStatus)

    @property
    def name(self) -> str:
        return self.metadata.name
