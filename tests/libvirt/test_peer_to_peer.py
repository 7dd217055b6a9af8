"""Peer-to-peer by default, and what happens when the source daemon cannot reach the destination.

Host C (``sasl_libvirt_host``) demands SASL. The controller logs in with the host's Secret; host
A's daemon has no credentials for it, so a peer-to-peer call from A is refused at once ("No
authentication callback available", VIR_ERR_AUTH_FAILED) before any job exists: the default
then migrates managed and says so; ``peerToPeer: true`` refuses instead, nothing moved.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from controller.api import load_migration
from controller.api.enums import Phase, Reason
from controller.backends.libvirt.driver import LibvirtDriver
from controller.backends.protocol import Credentials, HostConfig
from controller.backends.registry import DriverTable
from controller.engine import Engine, RunPolicy, StaticHosts
from tests.harness.libvirtd import LibvirtHosts, SaslLibvirtHost
from tests.kube.emulator import ApiServer, KopfOperator
from tests.libvirt.lab import A, Lab, Recorder, report
from tests.operator.conftest import CRDS, FAST, HANDLERS, NS, events_for, wait_phase

pytestmark = [pytest.mark.libvirt]

C = "host-c"
API = "domig.dev/v1alpha1"


def engine(lab: Lab, c: SaslLibvirtHost, p2p: bool | None) -> Engine:
    options = {} if p2p is None else {"peerToPeer": p2p}
    a = lab.hosts.a
    return Engine(
        DriverTable({"libvirt": LibvirtDriver()}),
        StaticHosts(
            [
                HostConfig(A, "libvirt", a.uri, a.spec.migration_address, options=options),
                HostConfig(C, "libvirt", c.uri, c.spec.migration_address, Credentials(c.credentials), options=options),
            ]
        ),
        RunPolicy(poll_interval=0.2),
    )


def to_c(domain: str) -> Any:
    spec = {"domain": domain, "source": A, "destination": C, "flags": ["live", "persistDest", "undefineSource"]}
    return load_migration({"metadata": {"name": f"m-{domain}", "generation": 1}, "spec": spec})


def on_c(c: SaslLibvirtHost, name: str) -> bool:
    conn = c.open()
    try:
        return name in [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()


@pytest.fixture
def c_host(sasl_libvirt_host: SaslLibvirtHost) -> Any:
    yield sasl_libvirt_host
    sasl_libvirt_host.destroy_all_domains()


async def test_default_falls_back_to_managed_and_says_so(
    clean_libvirt_hosts: LibvirtHosts, c_host: SaslLibvirtHost, use_kvm: bool
) -> None:
    lab = Lab(clean_libvirt_hosts, use_kvm)
    name = lab.idle_guest("fallback")
    recorder = Recorder()
    eng = engine(lab, c_host, None)
    try:
        status = await eng.run(to_c(name), recorder)
    finally:
        await eng.drivers.close()
    report("peer-to-peer refused by the destination", outcome=status.phase.value, limitations=status.limitations)
    assert status.phase is Phase.Succeeded, status.message
    assert on_c(c_host, name) and lab.running_on(name) == []
    [said] = status.limitations
    assert "host-a's libvirt daemon cannot reach host-c at qemu+tcp://127.0.0.4:16511/system" in said
    assert "authentication" in said and "the migration runs managed" in said
    assert "libvirt aborts it if the controller dies" in said
    # Said while it migrated, not only at the end.
    assert any(s.phase is Phase.Migrating and s.message == said for s in recorder.statuses)
    assert c_host.password not in repr([s.dump() for s in recorder.statuses])


async def test_peer_to_peer_true_refuses_instead_of_falling_back(
    clean_libvirt_hosts: LibvirtHosts, c_host: SaslLibvirtHost, use_kvm: bool
) -> None:
    lab = Lab(clean_libvirt_hosts, use_kvm)
    name = lab.idle_guest("strict")
    eng = engine(lab, c_host, True)
    try:
        status = await eng.run(to_c(name))
    finally:
        await eng.drivers.close()
    assert status.phase is Phase.Failed and status.reason is Reason.HostUnreachable, status.message
    assert "cannot reach host-c" in (status.message or "") and "peerToPeer: true" in (status.message or "")
    assert lab.running_on(name) == [A] and not on_c(c_host, name)


async def test_the_operator_warns_with_an_event(
    clean_libvirt_hosts: LibvirtHosts, c_host: SaslLibvirtHost, use_kvm: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = Lab(clean_libvirt_hosts, use_kvm)
    name = lab.idle_guest("op-fallback")
    a = lab.hosts.a
    with ApiServer(crds=CRDS) as kube:
        for key, value in {"KUBECONFIG": str(kube.kubeconfig), **FAST}.items():
            monkeypatch.setenv(key, value)
        async with KopfOperator(kube, HANDLERS):
            data = {k: base64.b64encode(v.encode()).decode() for k, v in c_host.credentials.items()}
            meta = {"name": "c-login", "namespace": NS}
            kube.create({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": data})
            login = {"credentialsSecretRef": {"name": "c-login", "namespace": NS}}
            for host, uri, address, extra in (
                (A, a.uri, a.spec.migration_address, {}),
                (C, c_host.uri, c_host.spec.migration_address, login),
            ):
                spec = {"driver": "libvirt", "uri": uri, "migrationAddress": address, **extra}
                kube.apply({"apiVersion": API, "kind": "HypervisorHost", "metadata": {"name": host}, "spec": spec})
            spec = {"domain": name, "source": A, "destination": C, "flags": ["live", "persistDest"]}
            kube.apply({"apiVersion": API, "kind": "DomainMigration", "metadata": {"name": "to-c", "namespace": NS},
                        "spec": spec})  # fmt: skip
            done = await wait_phase(kube, "to-c", {"Succeeded", "Failed", "Aborted"}, within=120)
            events = events_for(kube, "to-c")
    assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
    [said] = done["status"]["limitations"]
    assert "the migration runs managed" in said
    warnings = [e for e in events if e.get("reason") == "Limitation"]
    assert [e["type"] for e in warnings] == ["Warning"] and warnings[0]["message"] == said
    assert c_host.password not in repr(done) + repr(events)
