"""Conditions derived from the phase: our own types plus kstatus's Ready/Reconciling/Stalled.

kstatus (what `kubectl wait`, Flux and Argo CD read): Reconciling while work goes on, Ready when
the desired state holds, Stalled when it will not get there without a person.
"""

from controller.api.enums import Phase
from controller.api.status import Condition, DomainMigrationStatus

ACTIVE = (Phase.Preparing, Phase.Migrating, Phase.Verifying)


def _wanted(status: DomainMigrationStatus) -> dict[str, tuple[bool, str]]:
    phase = status.phase
    reason = status.reason.value if status.reason else phase.value
    validated = phase in (*ACTIVE, Phase.Succeeded) or (phase.terminal and status.migration_start_time is not None)
    rejected = phase.terminal and not validated and reason in ("InvalidSpec", "NoSupport")
    return {
        "Validated": (validated, "Validated" if validated else reason if rejected else phase.value),
        "Migrating": (phase in (Phase.Migrating, Phase.Verifying), phase.value),
        "Succeeded": (phase is Phase.Succeeded, reason),
        "Failed": (phase is Phase.Failed, reason),
        "Aborted": (phase is Phase.Aborted, reason),
        "Ready": (phase is Phase.Succeeded, reason),
        "Reconciling": (not phase.terminal, phase.value),
        "Stalled": (phase in (Phase.Failed, Phase.Aborted), reason),
    }


def refresh_conditions(status: DomainMigrationStatus, generation: int | None, now: str) -> None:
    """Bring conditions in line with the phase; a condition's time moves only when it flips."""
    old = {c.type: c for c in status.conditions}
    message = status.message or ""
    fresh: list[Condition] = []
    for kind, (true, reason) in _wanted(status).items():
        value = "True" if true else "False"
        before = old.get(kind)
        since = before.last_transition_time if before and before.status == value else now
        fresh.append(
            Condition(
                type=kind,
                status=value,
                reason=reason,
                message=message if true or kind == "Validated" else "",
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    status.conditions = fresh
