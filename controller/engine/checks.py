"""Validation: what the driver table says the source driver cannot honour, before anything moves."""

from controller.api.enums import MigrationFlag, Reason
from controller.api.spec import DomainMigrationSpec
from controller.backends.base import Capabilities, HostConfig
from controller.engine.run import Outcome, fail


def unsupported(spec: DomainMigrationSpec, driver: str, caps: Capabilities) -> Outcome | None:
    """NoSupport for the first thing the driver lacks, as the 2007 proposal's driver did."""
    if spec.renames and not caps.rename:
        return fail(Reason.NoSupport, f"the {driver} driver does not support renaming domains during migration")
    for flag in spec.flags:
        if flag not in caps.flags:
            return fail(Reason.NoSupport, f"the {driver} driver does not support flag {flag.value}")
    for name in spec.params:
        if name not in caps.params:
            return fail(Reason.NoSupport, f"the {driver} driver does not support parameter {name}")
    if spec.source == spec.destination and not caps.localhost:
        return fail(Reason.NoSupport, f"the {driver} driver cannot migrate a domain to the same host")
    if MigrationFlag.postCopy in spec.flags and not caps.postcopy:
        return fail(Reason.NoSupport, f"the {driver} driver cannot switch to post-copy")
    return None


def same_driver(source: HostConfig, dest: HostConfig) -> Outcome | None:
    if source.driver != dest.driver:
        return fail(
            Reason.NoSupport,
            f"cannot migrate between drivers: {source.name} uses {source.driver}, {dest.name} uses {dest.driver}",
        )
    return None
