"""/metrics, scraped from `domig operator` while migrations run and after they end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from controller.api.enums import Phase, Reason
from controller.api.status import DomainMigrationStatus, Progress
from controller.operator import metrics
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import HANDLERS, NS, host, migration, until, wait_phase
from tests.operator.processes import OperatorProcess, Scrape, domig_operator

# ~6 s at 500 MiB/s: long enough to scrape while it runs.
SLOW_WEB = {"name": "web", "memoryMiB": 3072, "dirtyRateMiBps": 10}
PER_MIGRATION = (
    "domig_migration_data_total_bytes",
    "domig_migration_data_processed_bytes",
    "domig_migration_data_remaining_bytes",
    "domig_migration_memory_transfer_rate_bytes",
    "domig_migration_dirty_memory_rate_bytes",
)
ENDED = {"Succeeded", "Failed", "Aborted"}


def per_migration(scrape: Scrape, name: str | None = None) -> dict[str, list[dict[str, str]]]:
    """The per-migration series present, of one migration or of any."""
    found = {m: [s for s in scrape.series(m) if name is None or s.get("name") == name] for m in PER_MIGRATION}
    return {m: series for m, series in found.items() if series}


async def scrape_until(op: OperatorProcess, check: Callable[[Scrape], bool], within: float = 20) -> Scrape:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        scrape = await op.scrape()
        if check(scrape):
            return scrape
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not seen on /metrics within {within} s:\n{scrape.text}")
        await asyncio.sleep(0.1)


def status(kube: ApiServer, name: str) -> dict[str, Any]:
    return dict((kube.read("domainmigrations", name, NS) or {}).get("status") or {})


@pytest.mark.slow
async def test_active_waiting_progress_results_histograms_and_host_readiness(kube: ApiServer, world: str) -> None:
    small = {"name": "db", "memoryMiB": 256}
    kube.apply(host("host-a", world, [SLOW_WEB, small], linkMiBps=500, limits={"maxOutbound": 1}))
    kube.apply(host("host-b", world, linkMiBps=500))
    kube.apply(host("host-down", world, faults={"unreachable": True}))
    with domig_operator(kube) as op:
        kube.apply(migration("slow"))
        during = await scrape_until(op, lambda s: per_migration(s, "slow").keys() == set(PER_MIGRATION))
        assert status(kube, "slow").get("phase") in {"Validating", "Preparing", "Migrating"}

        # The second one from host-a waits for its slot (maxOutbound: 1).
        kube.apply(migration("queued", domain="db"))
        await until(lambda: status(kube, "queued").get("reason") == "WaitingForSlot")
        during = await scrape_until(op, lambda s: s.value("domig_migrations_waiting") == 1)
        assert during.value("domig_migrations_active") == 1
        assert per_migration(during, "queued") == {}  # nothing moves yet: no progress series
        remaining = during.value("domig_migration_data_remaining_bytes", namespace=NS, name="slow")
        assert remaining is not None and 0 < remaining <= 3072 * 1024 * 1024

        # The same domain again: Busy at once, and nothing of it stays on /metrics.
        kube.apply(migration("again"))
        assert (await wait_phase(kube, "again", ENDED))["status"]["reason"] == "Busy"
        busy = {"phase": "Failed", "reason": "Busy", "driver": "test"}
        after_busy = await scrape_until(op, lambda s: s.value("domig_migrations_finished_total", **busy) is not None)
        assert after_busy.value("domig_migrations_finished_total", **busy) == 1
        assert per_migration(after_busy, "again") == {}
        assert after_busy.value("domig_migration_duration_seconds_count", driver="test", phase="Failed") is None

        readiness = await scrape_until(op, lambda s: len(s.series("domig_host_ready")) == 3)
        assert readiness.value("domig_host_ready", host="host-a", driver="test") == 1
        assert readiness.value("domig_host_ready", host="host-b", driver="test") == 1
        assert readiness.value("domig_host_ready", host="host-down", driver="test") == 0

        slow = await wait_phase(kube, "slow", ENDED, within=60)
        queued = await wait_phase(kube, "queued", ENDED, within=60)
        assert slow["status"]["phase"] == queued["status"]["phase"] == "Succeeded", op.output()[-3000:]
        after = await scrape_until(op, lambda s: s.value("domig_migrations_active") == 0)
        assert after.value("domig_migrations_waiting") == 0
        assert per_migration(after) == {}
        assert after.value("domig_migrations_finished_total", phase="Succeeded", reason="Completed", driver="test") == 2
        # Counted once each, with what their statuses say.
        took = [s["status"]["totalTimeMs"] / 1000 for s in (slow, queued)]
        paused = [s["status"]["downtimeMs"] / 1000 for s in (slow, queued)]
        assert after.value("domig_migration_duration_seconds_count", driver="test", phase="Succeeded") == 2
        assert after.value("domig_migration_duration_seconds_sum", driver="test", phase="Succeeded") == pytest.approx(
            sum(took)
        )
        assert after.value("domig_migration_downtime_seconds_count", driver="test") == 2
        assert after.value("domig_migration_downtime_seconds_sum", driver="test") == pytest.approx(sum(paused))
        assert after.value("domig_migration_duration_seconds_bucket", driver="test", phase="Succeeded", le="5.0") == 1
        assert after.value("domig_migration_duration_seconds_bucket", driver="test", phase="Succeeded", le="10.0") == 2

        kube.delete_object("hypervisorhosts", "host-down")
        gone = await scrape_until(op, lambda s: len(s.series("domig_host_ready")) == 2)
        assert gone.value("domig_host_ready", host="host-down", driver="test") is None
        assert gone.value("domig_host_ready", host="host-a", driver="test") == 1


@pytest.mark.slow
async def test_deleted_and_refused_migrations_leave_no_series(kube: ApiServer, world: str) -> None:
    kube.apply(host("host-a", world, [SLOW_WEB], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    kube.apply(host("host-c", world, [{"name": "web"}], allowedNamespaces=["elsewhere"]))
    with domig_operator(kube) as op:
        kube.apply(migration("refused", source="host-c"))
        assert (await wait_phase(kube, "refused", ENDED))["status"]["reason"] == "NamespaceNotAllowed"
        labels = {"phase": "Failed", "reason": "NamespaceNotAllowed", "driver": "test"}
        # The count goes up just after the status patch that the wait above saw.
        refused = await scrape_until(op, lambda s: s.value("domig_migrations_finished_total", **labels) is not None)
        assert refused.value("domig_migrations_finished_total", **labels) == 1
        assert per_migration(refused) == {}
        assert refused.value("domig_migrations_active") == refused.value("domig_migrations_waiting") == 0

        kube.apply(migration("deleted"))
        await scrape_until(op, lambda s: per_migration(s, "deleted").keys() == set(PER_MIGRATION))
        assert (await op.scrape()).value("domig_migrations_active") == 1
        kube.delete_object("domainmigrations", "deleted", NS)
        await until(lambda: kube.read("domainmigrations", "deleted", NS) is None, within=30)
        after = await op.scrape()
        assert after.value("domig_migrations_active") == 0
        assert per_migration(after) == {}
        assert after.value("domig_migrations_finished_total", phase="Aborted", reason="Aborted", driver="test") == 1
        assert after.value("domig_migration_duration_seconds_count", driver="test", phase="Aborted") == 1


def sample(metric: str, /, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(metric, labels)


async def test_an_operator_stop_drops_the_series_and_a_resume_counts_it_active_again(
    kube: ApiServer, world: str, operator_env: dict[str, str]
) -> None:
    """In-process, to read the registry at the instants the operator stops and resumes."""
    kube.apply(host("host-a", world, [SLOW_WEB], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    ours = {"namespace": NS, "name": "resumed"}
    ended = {"phase": "Succeeded", "reason": "Completed", "driver": "test"}
    finished_before = sample("domig_migrations_finished_total", **ended) or 0
    async with KopfOperator(kube, HANDLERS):
        kube.apply(migration("resumed"))
        await until(lambda: sample("domig_migration_data_remaining_bytes", **ours) is not None)
        assert sample("domig_migrations_active") == 1
    # Stopped mid-migration: the hypervisor goes on, this process no longer follows it.
    assert status(kube, "resumed")["phase"] == "Migrating", status(kube, "resumed")
    assert sample("domig_migrations_active") == 0
    assert all(sample(name, **ours) is None for name in PER_MIGRATION)
    async with KopfOperator(kube, HANDLERS):
        await until(lambda: sample("domig_migrations_active") == 1)
        await until(lambda: sample("domig_migration_data_remaining_bytes", **ours) is not None)
        done = await wait_phase(kube, "resumed", ENDED, within=60)
        assert done["status"]["phase"] == "Succeeded"
        await until(lambda: sample("domig_migrations_active") == 0)
        assert all(sample(name, **ours) is None for name in PER_MIGRATION)
        assert sample("domig_migrations_finished_total", **ended) == finished_before + 1
    assert sample("domig_migrations_active") == sample("domig_migrations_waiting") == 0


def test_an_end_reported_twice_is_counted_once_and_the_gauges_never_go_negative() -> None:
    ns, name, driver = "unit", "twice", "unit-driver"
    ended = DomainMigrationStatus(phase=Phase.Succeeded, reason=Reason.Completed, total_time_ms=1500, downtime_ms=20)
    labels = {"phase": "Succeeded", "reason": "Completed", "driver": driver}
    before = sample("domig_migrations_finished_total", **labels) or 0
    active, waiting = sample("domig_migrations_active"), sample("domig_migrations_waiting")
    metrics.mark_waiting(ns, name, driver)
    assert sample("domig_migrations_waiting") == (waiting or 0) + 1
    metrics.mark_active(ns, name, driver)
    assert (sample("domig_migrations_waiting"), sample("domig_migrations_active")) == (waiting, (active or 0) + 1)
    running = ended.model_copy(update={"phase": Phase.Migrating, "progress": Progress(data_remaining_bytes=7)})
    metrics.observe(ns, name, running)
    assert sample("domig_migration_data_remaining_bytes", namespace=ns, name=name) == 7
    metrics.observe(ns, name, ended)  # the engine's terminal report
    metrics.ended(ns, name, ended, driver)  # and the operator's own end on the same migration
    assert sample("domig_migrations_finished_total", **labels) == before + 1
    assert sample("domig_migration_duration_seconds_count", driver=driver, phase="Succeeded") == 1
    assert sample("domig_migration_duration_seconds_sum", driver=driver, phase="Succeeded") == 1.5
    assert sample("domig_migration_downtime_seconds_bucket", driver=driver, le="0.025") == 1
    assert sample("domig_migration_data_remaining_bytes", namespace=ns, name=name) is None
    metrics.observe(ns, name, running)  # a late report does not bring a series back
    assert sample("domig_migration_data_remaining_bytes", namespace=ns, name=name) is None
    metrics.forget(ns, name)
    metrics.forget(ns, name)
    assert (sample("domig_migrations_active"), sample("domig_migrations_waiting")) == (active, waiting)


def test_duration_is_timed_from_the_migrate_call_only() -> None:
    now = datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    started = DomainMigrationStatus(phase=Phase.Failed, migration_start_time="2026-01-01T00:00:00Z")
    assert metrics.duration_seconds(started, now) == 90
    assert metrics.duration_seconds(DomainMigrationStatus(phase=Phase.Failed), now) is None


def test_host_readiness_keeps_one_series_per_host_and_drops_old_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics.host_ready, "ttl", 0.3)
    metrics.host_probed("unit-host", "test", True)
    assert sample("domig_host_ready", host="unit-host", driver="test") == 1
    metrics.host_probed("unit-host", "xend", False)  # its spec now names another driver
    assert sample("domig_host_ready", host="unit-host", driver="test") is None
    assert sample("domig_host_ready", host="unit-host", driver="xend") == 0
    time.sleep(0.4)  # no probe since: this replica no longer probes it
    assert sample("domig_host_ready", host="unit-host", driver="xend") is None
    metrics.host_probed("unit-host", "xend", True)
    metrics.host_gone("unit-host")
    assert sample("domig_host_ready", host="unit-host", driver="xend") is None
