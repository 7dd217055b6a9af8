"""The DomainMigration document: the same YAML for `domig migrate` and for `kubectl apply`."""

from typing import Any, Literal

from pydantic import ConfigDict, Field

from controller.api.base import Model
from controller.api.spec import DomainMigrationSpec
from controller.api.status import DomainMigrationStatus

GROUP = "domig.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class ObjectMeta(Model):
    # Kubernetes adds many fields we do not read; keep them rather than refuse them.
    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    # A namespace's name is an RFC 1123 label: anything else cannot exist in any cluster.
    namespace: str | None = Field(None, min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    generation: int | None = None
    uid: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class DomainMigration(Model):
    api_version: Literal["domig.dev/v1alpha1"] = "domig.dev/v1alpha1"
    kind: Literal["DomainMigration"] = "DomainMigration"
    metadata: ObjectMeta
    spec: DomainMigrationSpec
    status: DomainMigrationStatus = Field(default_factory=DomainMigrationStatus)

    @property
    def key(self) -> str:
        ns = self.metadata.namespace
        return f"{ns}/{self.metadata.name}" if ns else self.metadata.name


def load_migration(data: Any) -> DomainMigration:
    """Parse a document, raising SpecError that names each bad field."""
    return DomainMigration.parse(data)
