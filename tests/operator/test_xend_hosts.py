"""The operator over the xend driver: two test xends on loopback, HypervisorHosts, a DomainMigration."""

from __future__ import annotations

from tests.backends.xendlab import posts, xend_lab
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import migration, until, wait_phase


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
