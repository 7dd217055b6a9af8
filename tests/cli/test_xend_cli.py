"""`domig` against two test xends in their own processes, at the addresses examples/hosts-xend.yaml names."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp

from controller.cli.documents import load_hosts_file, load_migration_file
from controller.cli.xend_demo import http_address, relocation_port
from xendsim import XendProcess

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ROOT / "examples" / "hosts-xend.yaml"
MIGRATION = ROOT / "examples" / "migration-xend.yaml"


async def domig(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli.main", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def example_xends() -> AsyncIterator[tuple[XendProcess, XendProcess]]:
    spec = load_migration_file(MIGRATION).spec
    hosts = load_hosts_file(HOSTS)
    source, dest = hosts.find(spec.source), hosts.find(spec.destination)
    assert source is not None and dest is not None
    (src_ip, src_port), (dst_ip, dst_port) = http_address(source), http_address(dest)
    async with XendProcess(
        "--name", dest.name, "--listen", f"{dst_ip}:{dst_port}",
        "--relocation", f"{dst_ip}:{relocation_port(dst_port)}", "--memory-scale", "1024",
    ) as b:  # fmt: skip
        async with XendProcess(
            "--name", source.name, "--listen", f"{src_ip}:{src_port}",
            "--relocation", f"{src_ip}:{relocation_port(src_port)}",
            "--relocation-default-port", str(relocation_port(dst_port)),
            "--memory-scale", "1024", "--domain", f"name={spec.domain},memory=256",
        ) as a:  # fmt: skip
            yield a, b


async def names(url: str) -> dict[str, str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_test/state") as reply:
        state = await reply.json()
    return {d["name"]: d["state"] for d in state["domains"]}


async def test_migrate_through_two_xend_processes() -> None:
    async with example_xends() as (a, b):
        code, out, err = await domig("migrate", "-f", str(MIGRATION), "--hosts", str(HOSTS), "-o", "json")
        assert code == 0, err
        status = json.loads(out)
        assert status["phase"] == "Succeeded" and status["reason"] == "Completed"
        assert status["target"]["hostname"] == "127.0.0.2" and status["target"]["state"] == "running"
        assert status["source"]["state"] == "absent"
        assert await names(a.url) == {"Domain-0": "r-----"}
        assert (await names(b.url))["web"] == "r-----"


async def test_xend_demo_runs_the_examples() -> None:
    code, _, err = await domig("xend-demo")
    assert code == 0, err
    assert "xen-a runs: Domain-0\n" in err and "xen-b runs: Domain-0, web" in err
    assert "Succeeded (Completed): migrated: web runs on xen-b" in err


# What a `pip install domig` without the simulator has: `import xendsim` fails as a missing module.
HIDE_SIMULATOR = """
import sys
sys.modules["xendsim"] = None  # import of xendsim halted: ModuleNotFoundError, as when not installed
from controller.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


async def test_xend_demo_without_the_simulator_says_how_to_get_it() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HIDE_SIMULATOR, "xend-demo",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    assert out == b""
    assert err.decode().splitlines() == [
        "domig xend-demo: the xend simulator is not installed; "
        "from a domig checkout run `pip install ./xendsim` (or `make setup`)"
    ]
