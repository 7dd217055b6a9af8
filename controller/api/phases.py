"""The phases of a DomainMigration, and every fact about each one, in one table.

A new phase is one enum member and one record here (plus its work function in
controller/engine/work.py, named by the record); nothing else keeps a list of phases.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Phase(StrEnum):
    Pending = "Pending"
    Validating = "Validating"
    Preparing = "Preparing"
    Migrating = "Migrating"
    Verifying = "Verifying"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Aborted = "Aborted"

    @property
    def record(self) -> PhaseRecord:
        return PHASES[self]

    @property
    def terminal(self) -> bool:
        return self.record.stage == "ended"

    @property
    def active(self) -> bool:
        """Past admission and not ended: it holds a slot, and a daemon drives it."""
        return self.record.stage == "active"

    @property
    def started(self) -> bool:
        """The migrate call may have been made: the domain may be in flight."""
        return self.record.started

    def may_go_to(self, other: Phase) -> bool:
        return other in self.record.goes_to


class ForbiddenTransition(RuntimeError):
    """A phase change the table does not allow: a bug, never a user's error."""

    def __init__(self, before: Phase, after: Phase) -> None:
        allowed = ", ".join(sorted(before.record.goes_to)) or "none"
        super().__init__(f"no transition {before.value} -> {after.value} (allowed: {allowed})")


Abort = Literal["at-once", "cancel-job", "too-late", "ended"]


@dataclass(frozen=True)
class PhaseRecord:
    description: str  # one line for status and Events; {placeholders} filled by the engine
    goes_to: frozenset[Phase]
    stage: Literal["waiting", "active", "ended"]
    work: str | None = None  # the engine's function for this phase (controller.engine.work)
    connects: bool = False  # needs both hosts connected before its work
    abort: Abort = "at-once"  # at-once: nothing moved yet; cancel-job: the hypervisor's job is cancelled
    checked: bool = False  # the spec passed validation against the drivers (condition Validated)
    started: bool = False
    warning: bool = False  # its Event is a Warning


_ENDS = frozenset({Phase.Failed, Phase.Aborted})

PHASES: dict[Phase, PhaseRecord] = {
    Phase.Pending: PhaseRecord("waiting to be admitted", frozenset({Phase.Validating, *_ENDS}), "waiting"),
    Phase.Validating: PhaseRecord(
        "checking what {source}'s driver supports",
        frozenset({Phase.Preparing, *_ENDS}),
        "active",
        work="validate",
    ),
    Phase.Preparing: PhaseRecord(
        "looking up {domain} on {source} and {target_name} on {destination}",
        frozenset({Phase.Migrating, Phase.Succeeded, *_ENDS}),
        "active",
        work="prepare",
        connects=True,
        checked=True,
    ),
    Phase.Migrating: PhaseRecord(
        "migrating {source_name} to {destination} via {hostname}",
        frozenset({Phase.Verifying, *_ENDS}),
        "active",
        work="migrate",
        connects=True,
        abort="cancel-job",
        checked=True,
        started=True,
    ),
    Phase.Verifying: PhaseRecord(
        "looking up {target_name} on {destination}",
        frozenset({Phase.Succeeded, Phase.Failed}),
        "active",
        work="verify",
        connects=True,
        abort="too-late",
        checked=True,
        started=True,
    ),
    Phase.Succeeded: PhaseRecord("done", frozenset(), "ended", abort="ended", checked=True),
    Phase.Failed: PhaseRecord("failed", frozenset(), "ended", abort="ended", warning=True),
    Phase.Aborted: PhaseRecord("aborted", frozenset(), "ended", abort="ended", warning=True),
}
