"""Pre-flight checks before anything moves, each reported in status; a dry run stops after them."""

from __future__ import annotations

import pytest

from controller.api import Phase
from controller.api.enums import Reason
from tests.engine.conftest import NarrowDriver, make_lab, migration

pytestmark = pytest.mark.looptime

WEB = [{"name": "web", "memoryMiB": 512}]
OTHER_WEB = [{"name": "web", "memoryMiB": 512, "uuid": "00000000-0000-4000-8000-000000000042"}]


def results(status: object) -> dict[str, str]:
    return {c.name: c.result for c in status.preflight}  # type: ignore[attr-defined]


async def test_every_migration_reports_its_checks() -> None:
    lab = make_lab(domains=WEB)
    status = await lab.run(migration())
    assert status.phase is Phase.Succeeded
    assert results(status) == {
        "Supported": "Passed",
        "PolicyAllows": "Passed",
        "HostsReachable": "Passed",
        "Domain": "Passed",
        "NameFree": "Passed",
        "MemoryFits": "Passed",
        "CpuCompatible": "Unknown",  # the guest names no CPU model: the test driver cannot tell
    }


async def test_a_dry_run_that_would_succeed_says_so_and_moves_nothing() -> None:
    lab = make_lab(domains=WEB)
    status = await lab.run(migration(dryRun=True, flags=["live", "undefineSource"]))
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.DryRun)
    assert (status.message or "").startswith("dry run: would succeed")
    assert "nothing moved" in (status.message or "")
    assert lab.migrate_calls == 0 and lab.where() == {"a": "running"}
    assert set(results(status).values()) <= {"Passed", "Unknown"}


async def test_a_dry_run_that_would_name_clash_says_what_would_fail() -> None:
    lab = make_lab(domains=WEB, b={"domains": OTHER_WEB})
    status = await lab.run(migration(dryRun=True))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.NameClash)
    assert (status.message or "").startswith("dry run: would fail: a domain named web already exists on b")
    checks = {c.name: c for c in status.preflight}
    assert checks["Domain"].result == "Failed" and checks["Domain"].reason is Reason.NameClash
    assert checks["HostsReachable"].result == "Passed"
    assert lab.migrate_calls == 0
    assert lab.where() == {"a": "running", "b": "running"}  # each its own domain, untouched


async def test_a_dry_run_refused_by_the_driver_names_the_check() -> None:
    lab = make_lab(domains=WEB)
    lab.driver = NarrowDriver()
    status = await lab.run(migration(dryRun=True, flags=["live", "postCopy"]))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.NoSupport)
    assert (status.message or "").startswith("dry run: would fail:")
    assert results(status) == {"Supported": "Failed"}


async def test_a_dry_run_to_an_unreachable_host() -> None:
    lab = make_lab(domains=WEB, b={"faults": {"unreachable": True}})
    status = await lab.run(migration(dryRun=True))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.HostUnreachable)
    assert results(status)["HostsReachable"] == "Failed"


async def test_a_guest_bigger_than_the_destinations_free_memory_does_not_start() -> None:
    lab = make_lab(domains=WEB, b={"memoryMiB": 256})
    status = await lab.run(migration(dryRun=True))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.NotEnoughMemory)
    assert "web needs 512 MiB and b has 256 MiB free" in (status.message or "")
    status = await make_lab(domains=WEB, b={"memoryMiB": 256}).run(migration())
    assert status.reason is Reason.NotEnoughMemory and status.migration_start_time is None


async def test_a_cpu_the_destination_cannot_run_is_refused_before_anything_moves() -> None:
    guest = [{"name": "web", "memoryMiB": 512, "cpuModel": "EPYC"}]
    lab = make_lab(domains=guest, a={"cpuModel": "EPYC"}, b={"cpuModel": "Skylake-Server"})
    status = await lab.run(migration(dryRun=True))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.CpuIncompatible), status.message
    assert results(status)["CpuCompatible"] == "Failed" and results(status)["MemoryFits"] == "Passed"
    same = make_lab(domains=guest, a={"cpuModel": "EPYC"}, b={"cpuModel": "EPYC"})
    assert results(await same.run(migration(dryRun=True)))["CpuCompatible"] == "Passed"
