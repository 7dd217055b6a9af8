"""Validation: what the driver table says the source driver cannot honour, before anything moves."""

from controller.api.enums import MigrationFlag, Reason
from controller.api.spec import DomainMigrationSpec
from controller.backends.base import Capabilities, HostConfig
from controller.engine.run import Outcome, fail


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


def unsupported(spec: DomainMigrationSpec, driver: str, caps: Capabilities) -> Outcome | None:
    """NoSupport for the first thing the driver lacks, before anything moves."""
    found = unsupported_fields(spec, driver, caps)
    return fail(Reason.NoSupport, found[0][1]) if found else None


def same_driver(source: HostConfig, dest: HostConfig) -> Outcome | None:
    if source.driver != dest.driver:
        return fail(
            Reason.NoSupport,
            f"cannot migrate between drivers: {source.name} uses {source.driver}, {dest.name} uses {dest.driver}",
        )
    return None
