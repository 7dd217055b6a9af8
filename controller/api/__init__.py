"""The resource model: spec, status, flags, params, typed reasons. Pure data and validation."""

from controller.api.enums import MigrationFlag, Phase, Reason
from controller.api.errors import SpecError
from controller.api.hypervisor_host import HypervisorHost, HypervisorHostSpec
from controller.api.resource import API_VERSION, GROUP, VERSION, DomainMigration, load_migration
from controller.api.spec import DomainMigrationSpec, Timeouts
from controller.api.status import DomainMigrationStatus, DomainState, Endpoint, Progress

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "DomainMigration",
    "DomainMigrationSpec",
    "DomainMigrationStatus",
    "DomainState",
    "Endpoint",
    "HypervisorHost",
    "HypervisorHostSpec",
    "MigrationFlag",
    "Phase",
    "Progress",
    "Reason",
    "SpecError",
    "Timeouts",
    "load_migration",
]
