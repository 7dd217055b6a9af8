"""The HypervisorHost document: how to reach one host, and what it allows."""

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt

from controller.api.base import Model
from controller.api.resource import ObjectMeta
from controller.api.rules import HOST_SPEC
from controller.api.status import Condition


class SecretRef(Model):
    name: str = Field(min_length=1)
    namespace: str | None = None


class HostLimits(Model):
    max_outbound: Annotated[StrictInt, Field(ge=0)] | None = None
    max_inbound: Annotated[StrictInt, Field(ge=0)] | None = None


class TestDomain(Model):
    """A domain the in-memory `test` driver starts the host with."""

    name: str = Field(min_length=1)
    uuid: str | None = None
    memory_mi_b: Annotated[StrictInt, Field(ge=1)] = 1024
    dirty_rate_mi_bps: Annotated[StrictFloat, Field(ge=0)] = 0.0
    running: StrictBool = True
    persistent: StrictBool = True


class TestHostFaults(Model):
    """Failure injection for the `test` driver, as fractions of the data sent."""

    unreachable: StrictBool = False
    destination_dies_at: Annotated[StrictFloat, Field(ge=0, le=1)] | None = None
    source_dies_at: Annotated[StrictFloat, Field(ge=0, le=1)] | None = None


class TestHostSpec(Model):
    domains: list[TestDomain] = Field(default_factory=list)
    link_mi_bps: Annotated[StrictFloat, Field(gt=0)] = 1000.0
    hostname: str | None = None
    faults: TestHostFaults = Field(default_factory=TestHostFaults)


class HypervisorHostSpec(Model):
    driver: Literal["test", "xend", "libvirt"]
    uri: str = Field(min_length=1)
    migration_address: str | None = None
    credentials_secret_ref: SecretRef | None = None
    limits: HostLimits = Field(default_factory=HostLimits)
    allowed_namespaces: list[str] | None = None
    # libvirt: the source daemon drives the migration itself (VIR_MIGRATE_PEER2PEER), so it goes on
    # if the controller dies; else the controller drives libvirt's protocol between the daemons.
    peer_to_peer: StrictBool = False
    test: TestHostSpec | None = None

    RULES = HOST_SPEC


class HypervisorHostStatus(Model):
    """Kept fresh by the operator's probe timer."""

    reachable: bool | None = None
    hostname: str | None = None
    hypervisor_version: str | None = None
    domain_count: int | None = None
    last_probe_time: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)


class HypervisorHost(Model):
    api_version: Literal["domig.dev/v1alpha1"] = "domig.dev/v1alpha1"
    kind: Literal["HypervisorHost"] = "HypervisorHost"
    metadata: ObjectMeta
    spec: HypervisorHostSpec
    status: HypervisorHostStatus = Field(default_factory=HypervisorHostStatus)

    @property
    def name(self) -> str:
        return self.metadata.name
