"""Validation: what the hosts' drivers cannot honour, before anything moves.

The engine's Validating phase and the admission webhook both ask these, so that a migration
the webhook lets in is one the engine accepts, for the same reasons in the same words.
"""

from collections.abc import Iterable

from controller.api.convergence import ConvergenceStep
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
    found += unsupported_steps(spec.convergence or [], driver, caps, "convergence")
    if spec.force_complete and not (caps.postcopy or caps.suspend):
        found.append(("forceComplete", f"the {driver} driver can neither switch to post-copy nor pause the guest"))
    return found


def step_problem(step: ConvergenceStep, driver: str, caps: Capabilities) -> tuple[str, str] | None:
    """(the step's field, why) when the driver cannot take this step; xend can take none."""
    action = step.do
    can = {
        "raiseDowntime": "downtime" in caps.live_tuning,
        "raiseBandwidth": "bandwidth" in caps.live_tuning,
        "postCopy": caps.postcopy,
        "pause": caps.suspend,
        "abort": caps.abort,
    }
    if not can[action.name]:
        return f"do.{action.name}", f"the {driver} driver cannot take the step {action.name}"
    watched = [name for name in step.when.given() if name != "elapsed"]
    if watched and not caps.progress:
        return f"when.{watched[0]}", f"the {driver} driver reports no progress figures to tell {watched[0]}"
    return None


def unsupported_steps(
    steps: list[ConvergenceStep], driver: str, caps: Capabilities, prefix: str
) -> list[tuple[str, str]]:
    found = []
    for i, step in enumerate(steps):
        problem = step_problem(step, driver, caps)
        if problem is not None:
            found.append((f"{prefix}[{i}].{problem[0]}", problem[1]))
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


def limitations(driver: str, caps: Capabilities) -> list[str]:
    """What the driver cannot do for a migration once it runs, said when it is admitted."""
    found = []
    if not caps.abort:
        found.append(
            f"the {driver} driver cannot abort a running migration: spec.abort, a timeout and a schedule's "
            "abort cannot stop it once it has started"
        )
    if not caps.progress:
        found.append(
            f"the {driver} driver reports no progress figures: no forecast, no convergence schedule, "
            "no stall detection (the completion timeout counts the wall clock)"
        )
    if not (caps.postcopy or caps.suspend):
        found.append(
            f"the {driver} driver can neither switch to post-copy nor pause the guest: nothing can force completion"
        )
    return found
