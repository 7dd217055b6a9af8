"""Between domig's vocabulary and libvirt's: flags, typed parameters, job stats, domain states.

Pure functions over libvirt's stable ABI numbers, so they are testable where libvirt-python is
not installed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from controller.api.enums import LIBVIRT_FLAG_BITS, MigrationFlag
from controller.api.params import SHARED_PARAMS
from controller.api.status import DomainState
from controller.backends.protocol import JobInfo, JobPhase, MigrationRequest

PEER2PEER = 1 << 1  # VIR_MIGRATE_PEER2PEER

# virDomainState
_STATES: dict[int, DomainState] = {
    0: DomainState.running,  # NOSTATE: libvirt reports it for a domain it has not classified; it exists and runs
    1: DomainState.running,
    2: DomainState.running,  # BLOCKED on a resource, still running
    3: DomainState.paused,
    4: DomainState.running,  # SHUTDOWN: being shut down, still running
    5: DomainState.shutoff,
    6: DomainState.crashed,
    7: DomainState.paused,  # PMSUSPENDED: the guest suspended itself; it does not run
}
PAUSED = 3
PAUSED_POSTCOPY = 12  # VIR_DOMAIN_PAUSED_POSTCOPY: the source half of a post-copy migration
PAUSED_POSTCOPY_FAILED = 13

# virDomainJobType and virDomainJobOperation
JOB_NONE, JOB_BOUNDED, JOB_UNBOUNDED, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED = range(6)
OPERATION_MIGRATION_OUT = 5

# `downtime` is ours: libvirt sets it with virDomainMigrateSetMaxDowntime once the job runs.
SET_AFTER_START = frozenset({"downtime"})
MULTI_VALUED = frozenset({"migrate_disks", "compression"})  # comma-separated here, repeated in libvirt


def state_of(state: int) -> DomainState:
    return _STATES.get(state, DomainState.running)


def flags_of(flags: Iterable[MigrationFlag], peer_to_peer: bool = False) -> int:
    mask = PEER2PEER if peer_to_peer else 0
    for flag in flags:
        mask |= 1 << LIBVIRT_FLAG_BITS[flag]
    return mask


def supported_params(library_params: Iterable[str]) -> frozenset[str]:
    """The shared parameters that this libvirt-python names, plus `downtime` (never another driver's own)."""
    names = set(library_params)
    return frozenset(p for p in SHARED_PARAMS if p in names or p in SET_AFTER_START)


def migrate_uri(hostname: str) -> str:
    """A migration address as libvirt's migrate_uri: a bare host (or host:port) becomes tcp://host."""
    if "://" in hostname:
        return hostname
    try:
        if ipaddress.ip_address(hostname).version == 6:
            return f"tcp://[{hostname}]"
    except ValueError:
        pass
    return f"tcp://{hostname}"


def params_of(request: MigrationRequest, with_uri: bool) -> dict[str, Any]:
    """libvirt's typed parameters for migrate3/migrateToURI3 (without those set after the start)."""
    params: dict[str, Any] = {}
    if with_uri:
        params["migrate_uri"] = migrate_uri(request.hostname)
    if request.dname:
        params["destination_name"] = request.dname
    for name, value in request.params.items():
        if name in SET_AFTER_START:
            continue
        if name in MULTI_VALUED and isinstance(value, str):
            params[name] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            params[name] = value
    return params


def _int(stats: Mapping[str, Any], key: str) -> int | None:
    value = stats.get(key)
    return int(value) if value is not None else None


def job_of(stats: Mapping[str, Any], phase: JobPhase, iteration: int | None = None, postcopy: bool = False) -> JobInfo:
    """JobInfo from virDomainGetJobStats' dictionary; the dirty rate in bytes/s, not pages/s."""
    dirty_pages = _int(stats, "memory_dirty_rate")
    page_size = _int(stats, "memory_page_size") or 4096
    seen_iteration = _int(stats, "memory_iteration")
    if iteration is not None and (seen_iteration is None or iteration > seen_iteration):
        seen_iteration = iteration  # the MIGRATION_ITERATION event may be ahead of the last poll
    if dirty_pages == 0 and (seen_iteration or 0) < 2:
        # QEMU measures the dirty rate at each dirty-bitmap sync after the first: during the first
        # pass its 0 means "not measured yet", and a forecast from it would promise convergence.
        dirty_pages = None
    total = _int(stats, "data_total")
    # While the job sets up, libvirt reports zeros: not "nothing to send", but "not known yet".
    known = bool(total)
    return JobInfo(
        phase=phase,
        data_total=total if known else None,
        data_processed=_int(stats, "data_processed") if known else None,
        data_remaining=_int(stats, "data_remaining") if known else None,
        bytes_per_second=_int(stats, "memory_bps"),
        dirty_rate=dirty_pages * page_size if dirty_pages is not None else None,
        iteration=seen_iteration,
        downtime_ms=_int(stats, "downtime"),
        elapsed_ms=_int(stats, "time_elapsed"),
        error=stats.get("errmsg"),
        postcopy=postcopy,
    )


def finished_phase(stats: Mapping[str, Any]) -> JobPhase | None:
    """The outcome of a finished outbound migration in completed-job stats, if they show one."""
    if stats.get("operation") != OPERATION_MIGRATION_OUT:
        return None
    return {
        JOB_COMPLETED: JobPhase.completed,
        JOB_FAILED: JobPhase.failed,
        JOB_CANCELLED: JobPhase.cancelled,
    }.get(int(stats.get("type", JOB_NONE)))


def running_migration(stats: Mapping[str, Any]) -> bool:
    """Whether active-job stats describe an outbound migration in progress."""
    kind = int(stats.get("type", JOB_NONE))
    return kind in (JOB_BOUNDED, JOB_UNBOUNDED) and stats.get("operation", OPERATION_MIGRATION_OUT) == (
        OPERATION_MIGRATION_OUT
    )
