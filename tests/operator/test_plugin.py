"""`kubectl domig` (the kubectl-domig plugin) as a process against the API server, the operator running."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, until, where


async def plugin(kube: ApiServer, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli.plugin", *args,
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_migrate_wait_list_hosts(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 2048}]))
    kube.apply(host("host-b", world))
    code, out, err = await plugin(
        kube, "-o", "json", "--interval", "0.2", "migrate", "web", "--from", "host-a", "--to", "host-b",
        "--flag", "live", "--flag", "undefineSource", "--param", "bandwidth=1000", "--wait",
    )  # fmt: skip
    assert code == 0, err
    status = json.loads(out)
    assert status["phase"] == "Succeeded" and status["progress"]["percent"] == 100.0
    assert "domainmigration.domig.dev/web-to-host-b-" in err
    assert where(world) == {"host-b": "running"}
    code, out, _ = await plugin(kube, "list")
    assert code == 0 and "web-to-host-b-" in out and "Succeeded" in out and "100.00%" in out
    await until(lambda: (kube.read("hypervisorhosts", "host-a") or {}).get("status", {}).get("conditions"))
    code, out, _ = await plugin(kube, "hosts")
    assert code == 0 and "host-a" in out and "True" in out


async def test_abort_through_the_plugin(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 8192}], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    code, out, err = await plugin(kube, "migrate", "web", "--from", "host-a", "--to", "host-b", "--name", "slow")
    assert code == 0 and out.strip() == "slow", err
    await until(lambda: (kube.read("domainmigrations", "slow", NS) or {}).get("status", {}).get("phase") == "Migrating")
    code, out, err = await plugin(kube, "-o", "json", "--interval", "0.2", "abort", "slow", "--wait")
    assert code == 3, err
    assert json.loads(out)["phase"] == "Aborted"
    assert where(world) == {"host-a": "running"}


async def test_bad_input_is_refused_naming_the_field(kube: ApiServer) -> None:
    code, _, err = await plugin(kube, "migrate", "web", "--from", "a", "--to", "b", "--flag", "warp")
    assert code == 2 and "spec.flags[0]: warp is not one of: live" in err and "Traceback" not in err
    code, _, err = await plugin(kube, "watch", "nothing-here")
    assert code == 2 and "404" in err
