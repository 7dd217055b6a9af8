"""The probe: what each host has and holds, in its status, in `kubectl get hvh` and in `kubectl domig hosts`."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import ROOT, host, migration, until, wait_phase
from tests.operator.test_plugin import plugin

GiB = 1024**3
TiB = 1024**4
CAPACITY = (
    "memoryTotalBytes",
    "memoryFreeBytes",
    "cpus",
    "cpuModel",
    "runningDomains",
    "migrationsIn",
    "migrationsOut",
)


def figures(kube: ApiServer, name: str) -> dict[str, Any]:
    status = (kube.read("hypervisorhosts", name) or {}).get("status", {})
    return {key: status.get(key) for key in CAPACITY}


def probed(kube: ApiServer, name: str) -> dict[str, Any] | None:
    status = (kube.read("hypervisorhosts", name) or {}).get("status", {})
    return status if "lastProbeTime" in status else None


async def test_each_host_says_what_it_has_and_what_moves_in_and_out(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    domains = [
        {"name": "web", "memoryMiB": 4096},
        {"name": "db", "memoryMiB": 2048},
        {"name": "old", "memoryMiB": 1024, "running": False},
    ]
    kube.apply(host("host-a", world, domains, linkMiBps=500, memoryMiB=16384, cpus=8, cpuModel="EPYC-Rome"))
    kube.apply(host("host-b", world, linkMiBps=500))  # says nothing of its size: the test driver's large default
    await until(lambda: probed(kube, "host-a") and probed(kube, "host-b"))
    assert figures(kube, "host-a") == {
        "memoryTotalBytes": 16 * GiB, "memoryFreeBytes": 10 * GiB, "cpus": 8, "cpuModel": "EPYC-Rome",
        "runningDomains": 2, "migrationsIn": 0, "migrationsOut": 0,
    }  # fmt: skip
    assert figures(kube, "host-b") == {
        "memoryTotalBytes": TiB, "memoryFreeBytes": TiB, "cpus": 256, "cpuModel": None,
        "runningDomains": 0, "migrationsIn": 0, "migrationsOut": 0,
    }  # fmt: skip
    assert probed(kube, "host-a")["domainCount"] == 3  # type: ignore[index]

    kube.apply(migration("web-to-b", flags=["live", "undefineSource"]))  # 4 GiB at 500 MiB/s: about 8 s
    await until(lambda: figures(kube, "host-a")["migrationsOut"] == 1 and figures(kube, "host-b")["migrationsIn"] == 1)
    assert (figures(kube, "host-a")["migrationsIn"], figures(kube, "host-b")["migrationsOut"]) == (0, 0)
    done = await wait_phase(kube, "web-to-b", {"Succeeded", "Failed"}, within=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]

    def settled() -> bool:
        return figures(kube, "host-a")["runningDomains"] == 1 and figures(kube, "host-b")["runningDomains"] == 1

    await until(settled)
    a, b = figures(kube, "host-a"), figures(kube, "host-b")
    assert (a["memoryFreeBytes"], a["migrationsOut"]) == (14 * GiB, 0)
    assert (b["memoryFreeBytes"], b["migrationsIn"]) == (TiB - 4 * GiB, 0)

    # What `kubectl get hvh` shows: the CRD's columns, read by kubectl's own JSONPath.
    crd = yaml.safe_load((ROOT / "crds" / "hypervisorhost.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    wanted = ",".join(f"{c['name'].upper().replace(' ', '_')}:{c['jsonPath']}" for c in columns if c["type"] != "date")
    shown = subprocess.run(
        ["kubectl", "--kubeconfig", str(kube.kubeconfig), "get", "hvh", "--sort-by=.metadata.name",
         "-o", f"custom-columns=NAME:.metadata.name,{wanted}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert [line.split() for line in shown.splitlines()] == [
        ["NAME", "DRIVER", "URI", "REACHABLE", "DOMAINS", "RUNNING", "FREE_MEMORY", "CPUS", "IN", "OUT",
         "EVACUATION", "TOTAL_MEMORY", "CPU_MODEL"],
        ["host-a", "test", world, "true", "2", "1", str(14 * GiB), "8", "0", "0", "<none>", str(16 * GiB),
         "EPYC-Rome"],
        ["host-b", "test", world, "true", "1", "1", str(TiB - 4 * GiB), "256", "0", "0", "<none>", str(TiB),
         "<none>"],
    ]  # fmt: skip

    # And `kubectl domig hosts`, in binary units.
    code, out, err = await plugin(kube, "hosts")
    assert code == 0, err
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines()
            if line.startswith("│") and "host-" in line}  # fmt: skip
    assert rows["host-a"][3:13] == ["True", "host-a", "2", "1", "14.0 GiB", "16.0 GiB", "8", "EPYC-Rome", "0", "0"]
    assert rows["host-b"][3:13] == ["True", "host-b", "1", "1", "1020.0 GiB", "1.0 TiB", "256", "", "0", "0"]
