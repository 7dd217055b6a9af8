"""Conditions: the one way to write one (`set_condition`), and those derived from the phase.

kstatus (what `kubectl wait`, Flux and Argo CD read): Reconciling while work goes on, Ready when
the desired state holds, Stalled when it will not get there without a person.
"""

from __future__ import annotations

from controller.api.enums import Phase
from controller.api.status import Condition, ConditionType, DomainMigrationStatus

T = ConditionType


def set_condition(
    conditions: list[Condition],
    kind: ConditionType,
    true: bool,
    reason: str,
    message: str,
    now: str,
    generation: int | None = None,
) -> list[Condition]:
    """Put one condition in the list, as Kubernetes' own meta.SetStatusCondition does: the
    transition time moves only when the status flips; the order of the others is kept."""
    value = "True" if true else "False"
    before = next((c for c in conditions if c.type is kind), None)
    since = before.last_transition_time if before is not None and before.status == value else now
    fresh = Condition(
        type=kind,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    if before is None:
        conditions.append(fresh)
    else:
        conditions[conditions.index(before)] = fresh
    return conditions


def _wanted(status: DomainMigrationStatus) -> dict[ConditionType, tuple[bool, str]]:
    phase = status.phase
    record = phase.record
    reason = status.reason.value if status.reason else phase.value
    validated = record.checked or (phase.terminal and status.migration_start_time is not None)
    rejected = phase.terminal and not validated and reason in ("InvalidSpec", "NoSupport")
    return {
        T.Validated: (validated, "Validated" if validated else reason if rejected else phase.value),
        T.Migrating: (record.started, phase.value),
        T.Succeeded: (phase is Phase.Succeeded, reason),
        T.Failed: (phase is Phase.Failed, reason),
        T.Aborted: (phase is Phase.Aborted, reason),
        T.Ready: (phase is Phase.Succeeded, reason),
        T.Reconciling: (not phase.terminal, phase.value),
        T.Stalled: (phase.terminal and record.warning, reason),
    }


def refresh_conditions(status: DomainMigrationStatus, generation: int | None, now: str) -> None:
    """Bring the phase's conditions in line with it; others (SpecChangeRefused) are left as they are."""
    message = status.message or ""
    for kind, (true, reason) in _wanted(status).items():
        shown = message if true or kind is T.Validated else ""
        set_condition(status.conditions, kind, true, reason, shown, now, generation)
