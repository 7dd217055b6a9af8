"""Validation: what the hosts' drivers cannot honour, before anything moves.

The engine's Validating phase and the admission webhook both ask these, so that a migration
the webhook lets in is one the engine accepts, for the same reasons in the same words.
"""

from collections.abc import Iterable

from controller.api.enums import MigrationFlag
from controller.api.spec import DomainMigrationSpec
from controller.backends.protocol import Capabilities


def unsupported_fields(spec: DomainMigrationSpec, driver: str, caps: Capabilities) -> list[tuple[str, str]]:
    """Everything the driver cannot honour, as (spec field, why), as the 2007 proposal's driver refused it."""
    found: list[tuple[str, str]] = []
    if spec.renames and not caps.rename:
        found.append(("dname", f"the {driver} driver does not support renaming domains during migration"))
    for i, flag in enumerate(spec.flags):
        if flag not in caps.flags:
            found.append((f"flags[{i}]", f"the {driver} driver does not support flag {flag.value}"))
    for name in spec.params:
        if name not in caps.params:
            found.append((f"params[{name}]", f"the {driver} driver does not support parameter {name}"))
    if spec.source == spec.destination and not caps.localhost:
        found.append(("destination", f"the {driver} driver cannot migrate a domain to the same host"))
    if MigrationFlag.postCopy in spec.flags and not caps.postcopy:
        where = spec.flags.index(MigrationFlag.postCopy)
        found.append((f"flags[{where}]", f"the {driver} driver cannot switch to post-copy"))
    return found


def unsupported_by_either(
    spec: DomainMigrationSpec, sides: Iterable[tuple[str, str, Capabilities]]
) -> list[tuple[str, str, str]]:
    """What any side's driver cannot honour, as (side, spec field, why), from (side, driver, capabilities):
    a migration needs both ends (libvirt checks both connections). Said once when two sides refuse it alike."""
    found: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for side, driver, caps in sides:
        for where, why in unsupported_fields(spec, driver, caps):
            if (where, why) not in seen:
                seen.add((where, why))
                found.append((side, where, why))
    return found


def different_drivers(source: str, source_driver: str, destination: str, destination_driver: str) -> str | None:
    """Why two hosts cannot migrate between them because of their drivers, or None."""
    if source_driver != destination_driver:
        return f"cannot migrate between drivers: {source} uses {source_driver}, {destination} uses {destination_driver}"
    return None
