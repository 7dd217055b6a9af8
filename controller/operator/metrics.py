"""Prometheus metrics, named as KubeVirt names its migration metrics where they overlap."""

import contextlib

from prometheus_client import Counter, Gauge

from controller.api.status import DomainMigrationStatus

LABELS = ("namespace", "name")

finished = Counter("domig_migrations_finished_total", "Migrations that ended, by phase and reason", ("phase", "reason"))
active = Gauge("domig_migrations_active", "Migrations between admission and their end")
data_total = Gauge("domig_migration_data_total_bytes", "Data to send, as the hypervisor counts it", LABELS)
data_processed = Gauge("domig_migration_data_processed_bytes", "Data sent so far", LABELS)
data_remaining = Gauge("domig_migration_data_remaining_bytes", "Data left to send", LABELS)
transfer_rate = Gauge("domig_migration_memory_transfer_rate_bytes", "Bytes sent per second", LABELS)
dirty_rate = Gauge("domig_migration_dirty_memory_rate_bytes", "Bytes the guest dirties per second", LABELS)

_GAUGES = (data_total, data_processed, data_remaining, transfer_rate, dirty_rate)


def observe(namespace: str, name: str, status: DomainMigrationStatus) -> None:
    p = status.progress
    if status.phase.terminal:
        for gauge in _GAUGES:
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)
        return
    if p is None:
        return
    for gauge, value in (
        (data_total, p.data_total_bytes),
        (data_processed, p.data_processed_bytes),
        (data_remaining, p.data_remaining_bytes),
        (transfer_rate, p.bytes_per_second),
        (dirty_rate, p.dirty_rate_bytes_per_second),
    ):
        if value is not None:
            gauge.labels(namespace, name).set(value)
