from controller.api import DomainMigrationStatus, Phase, Reason
from controller.api.conditions import refresh_conditions
from controller.api.status import percent_done


def test_percent_follows_virsh_and_stays_below_100_until_done() -> None:
    assert percent_done(1000, 250, False) == 75.0
    assert percent_done(1000, 0, False) == 99.99
    assert percent_done(1000, 0, True) == 100.0
    assert percent_done(None, None, False) is None
    assert percent_done(1000, 2000, False) == 0.0


def conditions(status: DomainMigrationStatus) -> dict[str, str]:
    return {c.type: c.status for c in status.conditions}


def test_kstatus_conditions_follow_the_phase() -> None:
    status = DomainMigrationStatus(phase=Phase.Migrating, migration_start_time="t")
    refresh_conditions(status, 3, "2026-01-01T00:00:00Z")
    assert conditions(status) == {
        "Validated": "True",
        "Migrating": "True",
        "Succeeded": "False",
        "Failed": "False",
        "Aborted": "False",
        "Ready": "False",
        "Reconciling": "True",
        "Stalled": "False",
    }
    assert all(c.observed_generation == 3 for c in status.conditions)
    status.phase, status.reason = Phase.Succeeded, Reason.Completed
    refresh_conditions(status, 3, "2026-01-01T00:01:00Z")
    got = {c.type: c for c in status.conditions}
    assert got["Ready"].status == "True" and got["Reconciling"].status == "False"
    # Unchanged conditions keep their transition time; flipped ones move.
    assert got["Validated"].last_transition_time == "2026-01-01T00:00:00Z"
    assert got["Ready"].last_transition_time == "2026-01-01T00:01:00Z"


def test_a_rejected_spec_is_not_validated_and_is_stalled() -> None:
    status = DomainMigrationStatus(phase=Phase.Failed, reason=Reason.NoSupport, message="no rename")
    refresh_conditions(status, 1, "now")
    got = {c.type: c for c in status.conditions}
    assert got["Validated"].status == "False" and got["Validated"].reason == "NoSupport"
    assert got["Stalled"].status == "True" and got["Failed"].message == "no rename"
