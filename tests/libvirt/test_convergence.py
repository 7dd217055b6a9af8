"""Migrations that finish on real QEMU: the forecast from libvirt's job stats, a convergence
schedule that raises the downtime and then switches to post-copy, the self-checking guest intact,
and a policy that forbids post-copy refusing the same spec before anything moves."""

from __future__ import annotations

import pytest

from controller.api.enums import Phase, Reason
from controller.api.migration_policy import MigrationPolicySpec
from controller.api.status import Outlook
from tests.harness.libvirtd import LibvirtHosts
from tests.libvirt.lab import A, B, Lab, Recorder, migration, report

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

SCHEDULE = [
    {"when": {"notConvergingFor": 2}, "do": {"raiseDowntime": 500}},
    {"when": {"notConvergingFor": 2}, "do": {"postCopy": True}},
]


@pytest.fixture
def lab(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> Lab:
    return Lab(clean_libvirt_hosts, use_kvm)


async def test_a_schedule_raises_the_downtime_then_post_copy_finishes_it_intact(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-schedule")
    limits: list[int] = []
    rec = Recorder(when=lambda s: len(s.convergence) == 1, then=lambda _s: limits.append(lab.max_downtime(name)))
    status, rec, seconds = await lab.run(migration(name, params={"bandwidth": 10}, convergence=SCHEDULE), rec)
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert [(c.action, c.outcome) for c in status.convergence] == [
        ("raiseDowntime 500", "Taken"),
        ("postCopy", "Taken"),
    ]
    assert limits == [500]  # set on the running job through migrateSetMaxDowntime
    assert all(c.forecast is Outlook.NotConverging for c in status.convergence)
    outlooks = [s.progress.forecast for s in rec.migrating() if s.progress]
    assert Outlook.Unknown in outlooks  # QEMU measures the dirty rate only at the end of the first pass
    assert status.progress is not None and status.progress.mode == "PostCopy"
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    assert lab.guest_advances(lab.hosts.b, name)
    integrity = lab.integrity(lab.hosts.b, name)
    report(
        "schedule: raiseDowntime then post-copy",
        kvm=lab.kvm,
        seconds=seconds,
        steps=[(c.action, c.elapsed_ms) for c in status.convergence],
        corrupt_pages=integrity.corrupt_pages,
        detail=integrity.summary(),
    )
    assert integrity.pattern_found
    assert integrity.corrupt_pages == 0, integrity.summary()


async def test_a_policy_forbidding_post_copy_refuses_the_same_spec_and_nothing_moves(lab: Lab) -> None:
    name = lab.dirtying_guest("dirty-forbidden")
    m = migration(name, params={"bandwidth": 10}, convergence=SCHEDULE)
    m.status.policy = "no-postcopy"
    m.status.applied_policy = MigrationPolicySpec.parse({"allowPostCopy": False}).dump()
    status, _, _ = await lab.run(m)
    assert (status.phase, status.reason) == (Phase.Failed, Reason.PolicyForbids)
    assert "spec.convergence[1].do.postCopy: PolicyForbids: MigrationPolicy no-postcopy" in (status.message or "")
    assert lab.running_on(name) == [A]
