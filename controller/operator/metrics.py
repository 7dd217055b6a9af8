"""Prometheus metrics, named as KubeVirt names its migration metrics where they overlap.

What this replica does is kept as a table of migrations by namespace/name, and the active and
waiting counts are read from it at scrape time: a count kept by inc/dec drifts as soon as one path
forgets its half (a restart, a handover, an early failure), a count of keys cannot. A migration's
own series exist only while it is active here; `forget` is called when its daemon ends, however
it ends, and removes whatever is left.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.api.status import DomainMigrationStatus

UNKNOWN = "unknown"  # the driver of a migration whose source host is not known
MIGRATION = ("namespace", "name")

# Live migration: seconds for a small guest, hours for a large busy one that barely converges.
DURATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, float("inf"))
# Downtime: a few ms when pre-copy converges, seconds when it is forced (suspend, post-copy switch).
DOWNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))


class State(Enum):
    waiting = "waiting"
    active = "active"
    ended = "ended"


@dataclass
class Tracked:
    driver: str
    state: State


migrations: dict[tuple[str, str], Tracked] = {}
# The scrape runs in prometheus-client's HTTP thread, the changes in the operator's event loop.
lock = threading.Lock()


def count(state: State) -> int:
    with lock:
        return sum(1 for tracked in migrations.values() if tracked.state is state)


migrations_active = Gauge(
    "domig_migrations_active", "Migrations this replica runs: admitted and not ended (Validating to Verifying)"
)
migrations_active.set_function(lambda: count(State.active))
migrations_waiting = Gauge(
    "domig_migrations_waiting", "Migrations this replica holds Pending: waiting for a slot or for their hosts"
)
migrations_waiting.set_function(lambda: count(State.waiting))

finished = Counter(
    "domig_migrations_finished_total",
    "Migrations that ended, by phase (Succeeded, Failed, Aborted), reason and driver",
    ("phase", "reason", "driver"),
)
duration = Histogram(
    "domig_migration_duration_seconds",
    "From the migrate call to the end (status.totalTimeMs, else since status.migrationStartTime)",
    ("driver", "phase"),
    buckets=DURATION_BUCKETS,
)
downtime = Histogram(
    "domig_migration_downtime_seconds",
    "How long the guest was paused for the switch-over, as the hypervisor reports it (status.downtimeMs)",
    ("driver",),
    buckets=DOWNTIME_BUCKETS,
)

data_total = Gauge("domig_migration_data_total_bytes", "Data to send, as the hypervisor counts it", MIGRATION)
data_processed = Gauge("domig_migration_data_processed_bytes", "Data sent so far", MIGRATION)
data_remaining = Gauge("domig_migration_data_remaining_bytes", "Data left to send", MIGRATION)
transfer_rate = Gauge("domig_migration_memory_transfer_rate_bytes", "Bytes sent per second", MIGRATION)
dirty_rate = Gauge("domig_migration_dirty_memory_rate_bytes", "Bytes the guest dirties per second", MIGRATION)

PER_MIGRATION = (data_total, data_processed, data_remaining, transfer_rate, dirty_rate)


def mark_waiting(namespace: str, name: str, driver: str) -> None:
    with lock:
        migrations[(namespace, name)] = Tracked(driver, State.waiting)


def mark_active(namespace: str, name: str, driver: str) -> None:
    with lock:
        migrations[(namespace, name)] = Tracked(driver, State.active)


def observe(namespace: str, name: str, status: DomainMigrationStatus) -> None:
    """An engine report: progress while it runs; its end when the phase is terminal."""
    if status.phase.terminal:
        ended(namespace, name, status)
        return
    tracked = migrations.get((namespace, name))
    p = status.progress
    if tracked is None or tracked.state is not State.active or p is None:
        return  # a series made for a migration not running here would have no one to remove it
    for gauge, value in (
        (data_total, p.data_total_bytes),
        (data_processed, p.data_processed_bytes),
        (data_remaining, p.data_remaining_bytes),
        (transfer_rate, p.bytes_per_second),
        (dirty_rate, p.dirty_rate_bytes_per_second),
    ):
        if value is not None:
            gauge.labels(namespace, name).set(value)


def ended(namespace: str, name: str, status: DomainMigrationStatus, driver: str | None = None) -> None:
    """Count the end once, whichever path reports it (the engine, or the operator before the engine)."""
    with lock:
        tracked = migrations.get((namespace, name))
        if tracked is not None and tracked.state is State.ended:
            return
        driver = driver or (tracked.driver if tracked else UNKNOWN)
        migrations[(namespace, name)] = Tracked(driver, State.ended)
    _remove_series(namespace, name)
    phase = status.phase.value
    finished.labels(phase, (status.reason or status.phase).value, driver).inc()
    seconds = duration_seconds(status)
    if seconds is not None:
        duration.labels(driver, phase).observe(seconds)
    if status.downtime_ms is not None:
        downtime.labels(driver).observe(status.downtime_ms / 1000)


def forget(namespace: str, name: str) -> None:
    """The daemon ends (finished, deleted, the operator stops or hands over): nothing of it stays."""
    with lock:
        migrations.pop((namespace, name), None)
    _remove_series(namespace, name)


def duration_seconds(status: DomainMigrationStatus, now: datetime | None = None) -> float | None:
    """None when the migrate call was never made: an early failure has no migration to time."""
    if status.total_time_ms is not None:
        return status.total_time_ms / 1000
    if not status.migration_start_time:
        return None
    try:
        start = datetime.strptime(status.migration_start_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None
    return max(((now or datetime.now(UTC)) - start).total_seconds(), 0.0)


class HostReadiness(Collector):
    """`domig_host_ready`, from the probes of the last few intervals.

    Only the acting replica probes: a replica that stops (it lost the peering lease) would show its
    last answers for ever, so an answer older than `ttl` seconds is not shown."""

    name = "domig_host_ready"
    help = "1 when the last probe reached the HypervisorHost, 0 when it did not"

    def __init__(self, ttl: float = 90.0) -> None:
        self.ttl = ttl
        self.probes: dict[str, tuple[str, bool, float]] = {}  # host -> driver, ready, when

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.name, self.help, labels=("host", "driver"))

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.help, labels=("host", "driver"))
        now = time.monotonic()
        with lock:
            probes = sorted(self.probes.items())
        for host, (driver, ready, when) in probes:
            if now - when <= self.ttl:
                family.add_metric((host, driver), 1 if ready else 0)
        yield family


host_ready = HostReadiness()
REGISTRY.register(host_ready)


def host_probed(host: str, driver: str, ready: bool) -> None:
    with lock:
        host_ready.probes[host] = (driver, ready, time.monotonic())


def host_gone(host: str) -> None:
    with lock:
        host_ready.probes.pop(host, None)


def _remove_series(namespace: str, name: str) -> None:
    for gauge in PER_MIGRATION:
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
