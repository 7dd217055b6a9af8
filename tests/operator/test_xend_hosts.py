"""The operator over the xend driver: two test xends on loopback, HypervisorHosts, a DomainMigration."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from tests.backends.xendlab import posts, xend_lab
from tests.kube.emulator import ApiServer, KopfOperator, KopfSubprocess
from tests.operator.conftest import FAST, HANDLERS, migration, until, wait_phase
from xendsim import XendProcess


def xend_host(name: str, url: str) -> dict[str, object]:
    return {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "HypervisorHost",
        "metadata": {"name": name},
        "spec": {"driver": "xend", "uri": url},
    }


async def test_the_operator_migrates_between_two_test_xends(kube: ApiServer, operator: KopfOperator) -> None:
    async with xend_lab() as lab:
        kube.apply(xend_host("xen-a", lab.a.url))
        kube.apply(xend_host("xen-b", lab.b.url))
        probed = await until(lambda: (kube.read("hypervisorhosts", "xen-b") or {}).get("status", {}).get("hostname"))
        assert probed == "127.0.0.2"  # GET /xend/node
        kube.apply(migration("m", source="xen-a", destination="xen-b", flags=["live"], params={"xen.port": 0}))
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"})
        assert done["status"]["phase"] == "Succeeded", done["status"]
        assert done["status"]["target"]["hostname"] == "127.0.0.2"  # synthesised from the destination
        assert lab.b.domain("web") is not None and lab.a.domain("web") is None
        assert len(posts(lab.a, "migrate")) == 1


async def test_a_rename_is_refused_before_any_request(kube: ApiServer, operator: KopfOperator) -> None:
    async with xend_lab() as lab:
        kube.apply(xend_host("xen-a", lab.a.url))
        kube.apply(xend_host("xen-b", lab.b.url))
        kube.apply(migration("m", source="xen-a", destination="xen-b", dname="web2"))
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"})
        assert done["status"]["reason"] == "NoSupport"
        assert "renaming" in done["status"]["message"]
        assert posts(lab.a, "migrate") == []


@pytest.mark.slow
async def test_kill_9_during_a_xend_migration_then_restart(kube: ApiServer) -> None:
    scale = ("--memory-scale", "24576")  # a 256 MiB guest streams for about 6 s
    async with XendProcess("--name", "hostB", "--listen", "127.0.0.2:0", "--relocation", "127.0.0.2:0", *scale) as b:
        async with XendProcess(
            "--name", "hostA", "--listen", "127.0.0.1:0", "--relocation", "127.0.0.1:0",
            "--relocation-default-port", str(b.relocation_port), "--domain", "name=web,memory=256", *scale,
        ) as a:  # fmt: skip
            kube.apply(xend_host("xen-a", a.url))
            kube.apply(xend_host("xen-b", b.url))
            with KopfSubprocess(kube, HANDLERS, env=FAST) as first:
                kube.apply(migration("m", source="xen-a", destination="xen-b", flags=["live"]))
                await until(lambda: "migrating-web" in names(a.url), within=30)
                first.kill()
                first.wait()
            with KopfSubprocess(kube, HANDLERS, env=FAST):
                done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
                assert done["status"]["phase"] == "Succeeded", (done["status"]["reason"], done["status"]["message"])
            migrate_posts = [q for q in requests(a.url) if q["method"] == "POST" and q["form"].get("op") == ["migrate"]]
            assert len(migrate_posts) == 1
            assert "web" in names(b.url) and "web" not in names(a.url)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.loads(reply.read())


def names(url: str) -> list[str]:
    return [d["name"] for d in _get(f"{url}/_test/state")["domains"]]


def requests(url: str) -> list[dict[str, Any]]:
    return list(_get(f"{url}/_test/requests"))
