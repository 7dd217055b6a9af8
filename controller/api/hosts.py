"""The HypervisorHost document: how to reach one host, and what it allows."""

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field

from controller.api.base import Model
from controller.api.resource import ObjectMeta
from controller.api.status import Condition


class SecretRef(Model):
    name: str = Field(min_length=1)
    namespace: str | None = None


class HostLimits(Model):
    max_outbound: Annotated[int, Field(ge=0)] | None = None
    max_inbound: Annotated[int, Field(ge=0)] | None = None


class TestDomain(Model):
    """A domain the in-memory `test` driver starts the host with."""

    name: str = Field(min_length=1)
    uuid: str | None = None
    memory_mi_b: Annotated[int, Field(ge=1)] = 1024
    dirty_rate_mi_bps: Annotated[float, Field(ge=0)] = 0.0
    running: bool = True
    persistent: bool = True


class TestHostFaults(Model):
    """Failure injection for the `test` driver, as fractions of the data sent."""

    unreachable: bool = False
    destination_dies_at: Annotated[float, Field(ge=0, le=1)] | None = None
    source_dies_at: Annotated[float, Field(ge=0, le=1)] | None = None


class TestHostSpec(Model):
    domains: list[TestDomain] = Field(default_factory=list)
    link_mi_bps: Annotated[float, Field(gt=0)] = 1000.0
    hostname: str | None = None
    faults: TestHostFaults = Field(default_factory=TestHostFaults)


def _has_password(uri: str) -> bool:
    try:
        return urlsplit(uri).password is not None
    except ValueError:
        return False


class HypervisorHostSpec(Model):
    driver: Literal["test", "xend", "libvirt"]
    uri: str = Field(min_length=1)
    migration_address: str | None = None
    credentials_secret_ref: SecretRef | None = None
    limits: HostLimits = Field(default_factory=HostLimits)
    allowed_namespaces: list[str] | None = None
    # libvirt: the source daemon drives the migration itself (VIR_MIGRATE_PEER2PEER), so it goes on
    # if the controller dies; else the controller drives libvirt's protocol between the daemons.
    peer_to_peer: bool = False
    test: TestHostSpec | None = None

    def problems(self) -> list[tuple[str, str]]:
        if _has_password(self.uri):
            return [("uri", "must not carry a password: put credentials in a Secret named by credentialsSecretRef")]
        if self.test is not None and self.driver != "test":
            return [("test", f"is only for the test driver, not {self.driver}")]
        if self.peer_to_peer and self.driver != "libvirt":
            return [("peerToPeer", f"is only for the libvirt driver, not {self.driver}")]
        return []


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

    def problems(self) -> list[tuple[str, str]]:
        return [(f"spec.{field}", why) for field, why in self.spec.problems()]

    @property
    def name(self) -> str:
        return self.metadata.name
