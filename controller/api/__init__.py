"""The resource model: spec, status, flags, params, typed reasons. Pure data and validation.

The names below are imported on first use (PEP 562): importing any submodule (controller.api.errors,
say) runs this file first, and it would otherwise build the host, migration and status models for
a caller that uses none of them. A command builds the models it imports, and only those.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from controller.api.enums import MigrationFlag, Phase, Reason
    from controller.api.errors import SpecError
    from controller.api.hypervisor_host import HypervisorHost, HypervisorHostSpec
    from controller.api.resource import API_VERSION, GROUP, VERSION, DomainMigration, load_migration
    from controller.api.spec import DomainMigrationSpec, Timeouts
    from controller.api.status import DomainMigrationStatus, DomainState, Endpoint, Progress

# Each public name, and the submodule that defines it.
_WHERE = {
    "API_VERSION": "resource",
    "GROUP": "resource",
    "VERSION": "resource",
    "DomainMigration": "resource",
    "DomainMigrationSpec": "spec",
    "DomainMigrationStatus": "status",
    "DomainState": "status",
    "Endpoint": "status",
    "HypervisorHost": "hypervisor_host",
    "HypervisorHostSpec": "hypervisor_host",
    "MigrationFlag": "enums",
    "Phase": "enums",
    "Progress": "status",
    "Reason": "enums",
    "SpecError": "errors",
    "Timeouts": "spec",
    "load_migration": "resource",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
