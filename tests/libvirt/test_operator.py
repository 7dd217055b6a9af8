"""The operator, run for real by kopf against the emulated API server, moving real QEMU guests
between the two real libvirt daemons: the whole product, end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.harness.libvirtd import LibvirtHost, LibvirtHosts
from tests.kube.emulator import ApiServer, KopfOperator, KopfSubprocess
from tests.libvirt.lab import Lab, report
from tests.operator.conftest import CRDS, FAST, HANDLERS, NS, until, wait_phase

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


def libvirt_host(name: str, uri: str, address: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"driver": "libvirt", "uri": uri}
    if address:
        spec["migrationAddress"] = address
    return {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name}, "spec": spec}


def dmig(name: str, domain: str, **spec: Any) -> dict[str, Any]:
    body = {
        "domain": domain,
        "source": "host-a",
        "destination": "host-b",
        "flags": ["live", "persistDest", "undefineSource"],
    }
    body.update(spec)
    return {"apiVersion": "domig.dev/v1alpha1", "kind": "DomainMigration", "metadata": {"name": name, "namespace": NS},
            "spec": body}  # fmt: skip


async def test_the_operator_migrates_real_guests(
    clean_libvirt_hosts: LibvirtHosts, use_kvm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts = clean_libvirt_hosts
    lab = Lab(hosts, use_kvm)
    idle = lab.idle_guest("op-idle")
    stuck = lab.dirtying_guest("op-stuck")
    with ApiServer(crds=CRDS) as kube:
        for key, value in {"KUBECONFIG": str(kube.kubeconfig), **FAST}.items():
            monkeypatch.setenv(key, value)
        async with KopfOperator(kube, HANDLERS):
            kube.apply(libvirt_host("host-a", hosts.a.uri, hosts.a.spec.migration_address))
            kube.apply(libvirt_host("host-b", hosts.b.uri, hosts.b.spec.migration_address))
            probed = await until(
                lambda: (kube.read("hypervisorhosts", "host-a") or {}).get("status", {}).get("reachable")
            )
            assert probed is True

            # An idle guest: live, with real byte counts, to Succeeded.
            kube.apply(dmig("idle", idle))
            done = await wait_phase(kube, "idle", {"Succeeded", "Failed", "Aborted"}, within=120)
            status = done["status"]
            assert status["phase"] == "Succeeded", status["message"]
            assert status["progress"]["dataTotalBytes"] > 0 and status["progress"]["percent"] == 100.0
            assert lab.running_on(idle) == ["host-b"]

            # A guest that never converges at 10 MiB/s, aborted through the spec: it stays on A.
            kube.apply(dmig("stuck", stuck, params={"bandwidth": 10}))

            def migrating() -> bool:
                s = (kube.read("domainmigrations", "stuck", NS) or {}).get("status", {})
                return s.get("phase") == "Migrating" and ((s.get("progress") or {}).get("iteration") or 0) >= 2

            await until(migrating, within=120)
            kube.patch_object("domainmigrations", "stuck", {"spec": {"abort": True}}, NS)
            done = await wait_phase(kube, "stuck", {"Succeeded", "Failed", "Aborted"}, within=120)
            assert done["status"]["phase"] == "Aborted", done["status"]["message"]
            assert lab.running_on(stuck) == ["host-a"]
            assert lab.guest_advances(hosts.a, stuck)


def incoming_qemu_starts(host: LibvirtHost, name: str) -> int:
    """How many times the host started a QEMU for the domain: one per migrate call that reached it."""
    log = host.qemu_log(name)
    return log.read_text(errors="replace").count("starting up") if log.exists() else 0


def source_job_running(lab: Lab, name: str) -> bool:
    import libvirt

    conn = lab.hosts.a.open()
    try:
        return int(conn.lookupByName(name).jobStats(0).get("type", 0)) != libvirt.VIR_DOMAIN_JOB_NONE
    finally:
        conn.close()


async def test_kill_9_of_the_operator_mid_migration_with_default_settings(
    clean_libvirt_hosts: LibvirtHosts, use_kvm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No peerToPeer on the hosts: the source daemon drives the migration, so it outlives the
    operator; the next operator re-attaches and it ends Succeeded, with one migrate call."""
    hosts = clean_libvirt_hosts
    lab = Lab(hosts, use_kvm)
    name = lab.dirtying_guest("op-kill")
    with ApiServer(crds=CRDS) as kube:
        monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
        kube.apply(libvirt_host("host-a", hosts.a.uri, hosts.a.spec.migration_address))
        kube.apply(libvirt_host("host-b", hosts.b.uri, hosts.b.spec.migration_address))
        # 10 MiB/s: it does not converge, so it is surely mid-way when the operator dies.
        kube.apply(dmig("kill", name, params={"bandwidth": 10}, timeouts={"progress": 600}))

        def migrating() -> bool:
            s = (kube.read("domainmigrations", "kill", NS) or {}).get("status", {})
            return s.get("phase") == "Migrating" and ((s.get("progress") or {}).get("iteration") or 0) >= 1

        with KopfSubprocess(kube, HANDLERS, env=FAST) as first:
            await until(migrating, within=120)
            first.kill()  # SIGKILL: no abort, no goodbye
            first.wait()
        await asyncio.sleep(3)
        outlived = source_job_running(lab, name)
        with KopfSubprocess(kube, HANDLERS, env=FAST) as second:
            kube.patch_object("domainmigrations", "kill", {"spec": {"forceComplete": True}}, NS)
            done = await wait_phase(kube, "kill", {"Succeeded", "Failed", "Aborted"}, within=120)
            output = second.output[-3000:]
    status = done["status"]
    starts = incoming_qemu_starts(hosts.b, name)
    report("operator killed (default settings)", job_outlived_it=outlived, outcome=status["phase"], calls=starts)
    assert outlived, "the source daemon should carry the migration on without the operator"
    assert status["phase"] == "Succeeded", (status["message"], output)
    assert lab.running_on(name) == ["host-b"] and lab.states(name)["host-a"] is None
    assert starts == 1, "one migrate call: host-b started one incoming QEMU"
    assert [t["phase"] for t in status["phaseTransitionTimestamps"]].count("Migrating") == 1
    assert status["limitations"] == []  # peer-to-peer was used: nothing to warn of
