"""Blocking look-ups on one libvirt connection; the connection runs them in its thread pool."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import libvirt

from controller.backends.libvirt.translate import PAUSED, PAUSED_POSTCOPY, state_of
from controller.backends.protocol import DomainInfo

UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
)


def _missing(exc: libvirt.libvirtError) -> bool:
    return bool(exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN)


def find(conn: Any, name_or_uuid: str) -> Any | None:
    """The domain by name, else by UUID; None when the host has neither."""
    try:
        return conn.lookupByName(name_or_uuid)
    except libvirt.libvirtError as exc:
        if not _missing(exc):
            raise
    if UUID.match(name_or_uuid):
        try:
            return conn.lookupByUUIDString(name_or_uuid)
        except libvirt.libvirtError as exc:
            if not _missing(exc):
                raise
    return None


def info_of(dom: Any) -> DomainInfo:
    state, _reason = dom.state()
    return DomainInfo(
        name=dom.name(),
        uuid=dom.UUIDString(),
        state=state_of(state),
        memory_bytes=int(dom.maxMemory()) * 1024,
        persistent=bool(dom.isPersistent()),
    )


def lookup(conn: Any, name_or_uuid: str) -> DomainInfo | None:
    dom = find(conn, name_or_uuid)
    if dom is None:
        return None
    try:
        return info_of(dom)
    except libvirt.libvirtError as exc:
        if _missing(exc):  # gone between the look-up and the question (a migration just finished)
            return None
        raise


def list_all(conn: Any) -> list[DomainInfo]:
    found = []
    for dom in conn.listAllDomains(0):
        with contextlib.suppress(libvirt.libvirtError):
            found.append(info_of(dom))
    return found


def job_stats(dom: Any, completed: bool = False) -> dict[str, Any]:
    """virDomainGetJobStats as a dict; empty when the domain has gone or libvirt keeps none."""
    try:
        return dict(dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED if completed else 0))
    except libvirt.libvirtError as exc:
        if _missing(exc) or exc.get_error_code() in (libvirt.VIR_ERR_OPERATION_INVALID,):
            return {}
        raise


def in_postcopy(dom: Any) -> bool:
    try:
        state, reason = dom.state()
    except libvirt.libvirtError as exc:
        if _missing(exc):
            return False
        raise
    return bool(state == PAUSED and reason == PAUSED_POSTCOPY)


def active(dom: Any) -> bool:
    try:
        return bool(dom.isActive())
    except libvirt.libvirtError as exc:
        if _missing(exc):
            return False
        raise


def resume(conn: Any, name: str) -> bool:
    """Resume a paused domain; False when there is no such domain."""
    dom = find(conn, name)
    if dom is None:
        return False
    if dom.state()[0] == PAUSED:
        dom.resume()
    return True


def undefine(conn: Any, name: str) -> bool:
    """Undefine a shut-off domain (gone already is fine); False when it is running."""
    dom = find(conn, name)
    if dom is None:
        return True
    if dom.isActive():
        return False
    dom.undefineFlags(UNDEFINE_FLAGS)
    return True
