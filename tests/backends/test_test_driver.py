"""The test driver as a hypervisor: jobs outlive the process that started them."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from controller.api.enums import MigrationFlag, Reason
from controller.api.status import DomainState
from controller.backends.protocol import BackendError, HostCapacity, HostConfig, JobPhase, MigrationRequest
from controller.backends.test.driver import TestDriver
from controller.backends.test.world import domain_record


def hosts(uri: str) -> tuple[HostConfig, HostConfig]:
    a = HostConfig("a", "test", uri, options={"domains": [{"name": "web", "memoryMiB": 1024}], "linkMiBps": 1024})
    return a, HostConfig("b", "test", uri, options={"hostname": "b.example", "linkMiBps": 1024})


@pytest.mark.looptime
async def test_in_memory_migration_moves_the_domain_on_the_loop_clock() -> None:
    driver = TestDriver()
    a, b = hosts("test:///default")
    src, dst = await driver.connect(a), await driver.connect(b)
    assert await dst.hostname() == "b.example"
    req = MigrationRequest("web", "b.example", flags=frozenset({MigrationFlag.live, MigrationFlag.undefineSource}))
    await src.migrate(dst, req)
    assert (await src.job("web")).phase is JobPhase.active
    assert await dst.lookup("web") is None  # the target is visible only after success
    await asyncio.sleep(0.5)
    assert (await src.job("web")).data_processed == 512 * 1024 * 1024
    await asyncio.sleep(1)
    job = await src.job("web")
    assert job.phase is JobPhase.completed and job.elapsed_ms == 1000
    assert await src.lookup("web") is None
    moved = await dst.lookup("web")
    assert moved is not None and moved.running and not moved.persistent


@pytest.mark.looptime
async def test_migrate_refuses_a_wrong_address_a_clash_and_a_second_job() -> None:
    driver = TestDriver()
    a, b = hosts("test:///default")
    src, dst = await driver.connect(a), await driver.connect(b)
    with pytest.raises(BackendError) as info:
        await src.migrate(dst, MigrationRequest("web", "nowhere"))
    assert info.value.reason is Reason.HostUnreachable
    await src.migrate(dst, MigrationRequest("web", "b", flags=frozenset({MigrationFlag.live})))
    with pytest.raises(BackendError) as info:
        await src.migrate(dst, MigrationRequest("web", "b"))
    assert info.value.reason is Reason.Busy


LIVE = frozenset({MigrationFlag.live})


@pytest.mark.looptime
async def test_a_domain_migrates_back_onto_its_own_shut_off_definition() -> None:
    driver = TestDriver()
    a, b = hosts("test:///default")
    src, dst = await driver.connect(a), await driver.connect(b)
    await src.migrate(dst, MigrationRequest("web", "b.example", flags=LIVE))
    await asyncio.sleep(2)
    left, arrived = await src.lookup("web"), await dst.lookup("web")
    assert left is not None and left.state is DomainState.shutoff and left.persistent  # as libvirt leaves it
    assert arrived is not None and arrived.running and not arrived.persistent
    await dst.migrate(src, MigrationRequest("web", "a", flags=LIVE))
    await asyncio.sleep(2)
    assert (await dst.job("web")).phase is JobPhase.completed
    back = await src.lookup("web")
    assert back is not None and back.running and back.persistent and back.uuid == left.uuid
    assert await dst.lookup("web") is None  # it was transient there


OTHER_UUID = "00000000-0000-0000-0000-0000000000aa"


@pytest.mark.parametrize(
    ("on_b", "text"),
    [
        ({"name": "web", "uuid": OTHER_UUID, "running": False}, f"domain 'web' already exists with uuid {OTHER_UUID}"),
        ({"name": "web"}, "domain 'web' is already active"),  # the same UUID, running
        ({"name": "web-old", "uuid": domain_record({"name": "web"})["uuid"], "running": False}, "'web-old' is already"),
    ],
)
@pytest.mark.looptime
async def test_migrate_refuses_what_libvirt_refuses_at_the_destination(on_b: dict[str, Any], text: str) -> None:
    driver = TestDriver()
    a, b = hosts("test:///default")
    b = HostConfig("b", "test", b.uri, options={**b.options, "domains": [on_b]})
    src, dst = await driver.connect(a), await driver.connect(b)
    with pytest.raises(BackendError) as info:
        await src.migrate(dst, MigrationRequest("web", "b.example", flags=LIVE))
    assert info.value.reason is Reason.NameClash and text in info.value.message
    assert (await src.job("web")).phase is JobPhase.none


@pytest.mark.looptime
async def test_post_copy_onto_our_definition_shows_one_running_domain_there() -> None:
    driver = TestDriver()
    a = HostConfig("a", "test", "test:///default", options={"domains": [{"name": "web", "dirtyRateMiBps": 2000}]})
    b = HostConfig("b", "test", "test:///default", options={"domains": [{"name": "web", "running": False}]})
    src, dst = await driver.connect(a), await driver.connect(b)
    flags = frozenset({MigrationFlag.live, MigrationFlag.postCopy})
    await src.migrate(dst, MigrationRequest("web", "b", flags=flags))
    await asyncio.sleep(3)
    await src.start_postcopy("web")
    await asyncio.sleep(0.001)
    assert [(d.name, d.state) for d in await dst.list_domains()] == [("web", DomainState.running)]


WORKER = """
import asyncio, sys
from controller.backends.protocol import HostConfig, MigrationRequest
from controller.backends.test.driver import TestDriver
from controller.api.enums import MigrationFlag

async def main():
    uri = sys.argv[1]
    d = TestDriver()
    a = HostConfig("a", "test", uri, options={"domains": [{"name": "web", "memoryMiB": 1024}], "linkMiBps": 512})
    src, dst = await d.connect(a), await d.connect(HostConfig("b", "test", uri))
    await src.migrate(dst, MigrationRequest("web", "b", flags=frozenset({MigrationFlag.live})))
asyncio.run(main())
"""


async def test_a_file_world_keeps_the_job_running_after_its_process_is_gone(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    uri = f"test://{state}"
    subprocess.run([sys.executable, "-c", WORKER, uri], check=True, timeout=60)
    saved = json.loads(state.read_text())
    assert saved["migrateCalls"] == 1 and "a/web" in saved["jobs"]
    driver = TestDriver()
    src = await driver.connect(HostConfig("a", "test", uri))
    job = await src.job("web")
    assert job.phase is JobPhase.active and job.data_total == 1024 * 1024 * 1024
    await asyncio.sleep(2.2)  # 1 GiB at 512 MiB/s: the job finishes with nobody watching
    assert (await src.job("web")).phase is JobPhase.completed
    dst = await driver.connect(HostConfig("b", "test", uri))
    assert (await dst.lookup("web")) is not None


async def test_concurrent_writers_do_not_lose_updates(tmp_path: Path) -> None:
    uri = f"test://{tmp_path / 'state.json'}"
    code = (
        "import asyncio,sys\n"
        "from controller.backends.protocol import HostConfig\n"
        "from controller.backends.test.driver import TestDriver\n"
        "async def main():\n"
        "    d = TestDriver()\n"
        "    for i in range(20):\n"
        "        await d.connect(HostConfig(f'h{sys.argv[2]}-{i}', 'test', sys.argv[1]))\n"
        "asyncio.run(main())\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, uri, str(n)]) for n in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    saved = json.loads((tmp_path / "state.json").read_text())
    assert len(saved["hosts"]) == 80


TiB = 1024**4
GiB = 1024**3


async def test_a_host_that_names_no_size_is_large_and_says_so() -> None:
    driver = TestDriver()
    conn = await driver.connect(HostConfig("a", "test", "test:///default"))
    assert await conn.capacity() == HostCapacity(
        memory_total_bytes=TiB, memory_free_bytes=TiB, cpus=256, cpu_model=None, running_domains=0
    )
    assert driver.capabilities.capacity and driver.capabilities.cpu_compare


@pytest.mark.looptime
async def test_capacity_counts_what_runs_and_follows_a_migration() -> None:
    driver = TestDriver()
    domains = [
        {"name": "web", "memoryMiB": 2048},
        {"name": "db", "memoryMiB": 4096},
        {"name": "archive", "memoryMiB": 8192, "running": False},
    ]
    a = HostConfig("a", "test", "test:///default", options={"domains": domains, "memoryMiB": 16384, "cpus": 8})
    b = HostConfig("b", "test", "test:///default", options={"memoryMiB": 8192, "cpus": 4, "cpuModel": "EPYC"})
    src, dst = await driver.connect(a), await driver.connect(b)
    assert await src.capacity() == HostCapacity(16 * GiB, 10 * GiB, 8, None, 2)  # archive is shut off
    assert await dst.capacity() == HostCapacity(8 * GiB, 8 * GiB, 4, "EPYC", 0)
    await src.migrate(dst, MigrationRequest("web", "b", flags=LIVE | {MigrationFlag.undefineSource}))
    # On its way, the domain still holds its memory on the source, and nothing yet on the destination.
    assert (await src.capacity()).memory_free_bytes == 10 * GiB
    assert (await dst.capacity()).memory_free_bytes == 8 * GiB
    await asyncio.sleep(5)
    assert (await src.job("web")).phase is JobPhase.completed
    assert await src.capacity() == HostCapacity(16 * GiB, 12 * GiB, 8, None, 1)
    assert await dst.capacity() == HostCapacity(8 * GiB, 6 * GiB, 4, "EPYC", 1)


@pytest.mark.looptime
async def test_a_guest_cpu_model_runs_only_on_a_host_of_that_model() -> None:
    driver = TestDriver()
    uri = "test:///default"
    domains = [{"name": "web", "cpuModel": "Skylake"}, {"name": "any"}]
    a = await driver.connect(HostConfig("a", "test", uri, options={"domains": domains, "cpuModel": "Skylake"}))
    epyc = await driver.connect(HostConfig("epyc", "test", uri, options={"cpuModel": "EPYC"}))
    same = await driver.connect(HostConfig("same", "test", uri, options={"cpuModel": "Skylake"}))
    plain = await driver.connect(HostConfig("plain", "test", uri))
    assert await a.guest_cpu("web") == "Skylake" and await a.guest_cpu("any") is None
    with pytest.raises(BackendError) as info:
        await a.guest_cpu("nosuch")
    assert info.value.reason is Reason.DomainNotFound
    assert await epyc.cpu_fits("Skylake") == (False, "epyc's CPU is EPYC, the guest's is Skylake")
    assert await same.cpu_fits("Skylake") == (True, "same's CPU is Skylake")
    assert await plain.cpu_fits("Skylake") == (True, "plain runs any CPU model")
    # The destination refuses it as libvirt's Prepare does: the guest stays where it runs.
    with pytest.raises(BackendError) as info:
        await a.migrate(epyc, MigrationRequest("web", "epyc", flags=LIVE))
    assert info.value.reason is Reason.TargetFailed
    assert str(info.value) == (
        "the guest CPU is incompatible with the host CPU: epyc's CPU is EPYC, the guest's is Skylake"
    )
    assert (await a.job("web")).phase is JobPhase.none and (await a.lookup("web")).running  # type: ignore[union-attr]
    await a.migrate(epyc, MigrationRequest("any", "epyc", flags=LIVE))  # a guest that names no model goes anywhere
    await a.migrate(same, MigrationRequest("web", "same", flags=LIVE))
    await asyncio.sleep(5)
    assert (await a.job("web")).phase is JobPhase.completed
    assert await same.guest_cpu("web") == "Skylake"  # the model travels with the guest
