"""The closed vocabularies of a DomainMigration: flags, phases and failure reasons."""

from enum import StrEnum

from controller.api.phases import Phase  # the enum lives with its table; importable here as before


class MigrationFlag(StrEnum):
    """libvirt's VIR_MIGRATE_* flags a user may ask for, with libvirt's meanings."""

    live = "live"
    persistDest = "persistDest"
    undefineSource = "undefineSource"
    paused = "paused"
    offline = "offline"
    autoConverge = "autoConverge"
    postCopy = "postCopy"
    compressed = "compressed"
    parallel = "parallel"
    tls = "tls"
    abortOnError = "abortOnError"
    changeProtection = "changeProtection"
    unsafe = "unsafe"
    nonSharedDisk = "nonSharedDisk"
    nonSharedInc = "nonSharedInc"


# libvirt's bit numbers, so a backend can build VIR_MIGRATE_* masks from one table.
LIBVIRT_FLAG_BITS: dict[MigrationFlag, int] = {
    MigrationFlag.live: 0,
    MigrationFlag.persistDest: 3,
    MigrationFlag.undefineSource: 4,
    MigrationFlag.paused: 5,
    MigrationFlag.nonSharedDisk: 6,
    MigrationFlag.nonSharedInc: 7,
    MigrationFlag.changeProtection: 8,
    MigrationFlag.unsafe: 9,
    MigrationFlag.offline: 10,
    MigrationFlag.compressed: 11,
    MigrationFlag.abortOnError: 12,
    MigrationFlag.autoConverge: 13,
    MigrationFlag.postCopy: 15,
    MigrationFlag.tls: 16,
    MigrationFlag.parallel: 17,
}


class Reason(StrEnum):
    """Why a migration ended (or waits) the way it did; machine-readable, stable."""

    NoSupport = "NoSupport"
    InvalidSpec = "InvalidSpec"
    DomainNotFound = "DomainNotFound"
    HostUnreachable = "HostUnreachable"
    NameClash = "NameClash"
    Busy = "Busy"
    Timeout = "Timeout"
    Stalled = "Stalled"
    NotConverging = "NotConverging"  # the convergence schedule's abort step
    PolicyForbids = "PolicyForbids"
    NotEnoughMemory = "NotEnoughMemory"  # the destination has less free memory than the guest
    CpuIncompatible = "CpuIncompatible"  # the destination cannot run the guest's CPU
    DryRun = "DryRun"  # a dry run that would succeed: every pre-flight check passed, nothing moved
    Aborted = "Aborted"
    TargetFailed = "TargetFailed"
    SourceFailed = "SourceFailed"
    AlreadyAtDestination = "AlreadyAtDestination"
    Completed = "Completed"
    # Set by the operator, not the engine: the migration waits for a free slot.
    WaitingForSlot = "WaitingForSlot"
    HostNotFound = "HostNotFound"
    HostNotReady = "HostNotReady"
    HostInMaintenance = "HostInMaintenance"
    Unschedulable = "Unschedulable"  # no destination given and no host fits (yet)
    NamespaceNotAllowed = "NamespaceNotAllowed"


__all__ = ["LIBVIRT_FLAG_BITS", "MigrationFlag", "Phase", "Reason"]
