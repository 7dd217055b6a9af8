"""kstatus's rules and the Argo CD health check, case by case, on the conditions each phase writes."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.conditions import refresh_conditions
from controller.api.enums import Phase, Reason
from controller.api.status import DomainMigrationStatus
from tests.deploy.test_manifests import argo_health
from tests.health.kstatus import kstatus

EXPECTED = {
    Phase.Pending: ("InProgress", "Progressing"),
    Phase.Validating: ("InProgress", "Progressing"),
    Phase.Preparing: ("InProgress", "Progressing"),
    Phase.Migrating: ("InProgress", "Progressing"),
    Phase.Verifying: ("InProgress", "Progressing"),
    Phase.Succeeded: ("Current", "Healthy"),
    Phase.Failed: ("Failed", "Degraded"),
    Phase.Aborted: ("Failed", "Degraded"),
}
REASONS = {Phase.Succeeded: Reason.Completed, Phase.Failed: Reason.Stalled, Phase.Aborted: Reason.Aborted}


def obj(phase: Phase, generation: int = 1, observed: int = 1, **meta: Any) -> dict[str, Any]:
    status = DomainMigrationStatus(phase=phase, reason=REASONS.get(phase), message="m")
    refresh_conditions(status, observed, "2026-01-01T00:00:00Z")
    status.observed_generation = observed
    return {"kind": "DomainMigration", "metadata": {"generation": generation, **meta}, "status": status.dump()}


@pytest.mark.parametrize("phase", list(Phase))
def test_each_phase(phase: Phase) -> None:
    o = obj(phase)
    assert (kstatus(o)[0], argo_health("DomainMigration", o)[0]) == EXPECTED[phase]


@pytest.mark.parametrize("phase", [Phase.Succeeded, Phase.Failed, Phase.Migrating])
def test_an_edit_not_yet_observed_is_in_progress_whatever_the_phase(phase: Phase) -> None:
    o = obj(phase, generation=2, observed=1)
    assert kstatus(o) == ("InProgress", "DomainMigration generation is 2, but latest observed generation is 1")
    assert argo_health("DomainMigration", o)[0] == "Progressing"
    caught_up = obj(phase, generation=2, observed=2)
    assert (kstatus(caught_up)[0], argo_health("DomainMigration", caught_up)[0]) == EXPECTED[phase]


def test_being_deleted() -> None:
    o = obj(Phase.Migrating, deletionTimestamp="2026-01-01T00:00:00Z")
    assert kstatus(o)[0] == "Terminating" and argo_health("DomainMigration", o)[0] == "Progressing"


def test_no_status_yet() -> None:
    # kstatus calls a custom resource without status Current; the operator writes one at once.
    o = {"kind": "DomainMigration", "metadata": {"generation": 1}}
    assert kstatus(o)[0] == "Current" and argo_health("DomainMigration", o)[0] == "Progressing"
