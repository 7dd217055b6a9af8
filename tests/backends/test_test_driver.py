"""The test driver as a hypervisor: jobs outlive the process that started them."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.api.enums import MigrationFlag, Reason
from controller.backends.base import BackendError, HostConfig, JobPhase, MigrationRequest
from controller.backends.test import TestDriver


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


WORKER = """
import asyncio, sys
from controller.backends.base import HostConfig, MigrationRequest
from controller.backends.test import TestDriver
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
        "from controller.backends.base import HostConfig\n"
        "from controller.backends.test import TestDriver\n"
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
