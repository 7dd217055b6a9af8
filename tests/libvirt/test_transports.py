"""Every libvirt transport users rely on, through the engine on the two real daemons.

- ``qemu+tls://``: A and B listen for TLS with certificates made for the run (tests/harness/pki.py);
  domig's connections carry the client certificate by ``?pkipath=``. Managed, domig opens both
  URIs; peer-to-peer, A's daemon opens B's URI itself, pkipath and all (the only way it can
  reach B is that ``qemu+tls://`` URI: B listens on TCP too, but not at that port).
- the migration stream itself over TLS (flag ``tls``): QEMU's own certificates, per host.
- ``qemu+ssh://``: an sshd in each host's mount namespace (tests/harness/sshd.py), a user key made
  for the run (``keyfile=``), the servers' keys checked against a known_hosts made for the run.

Each mode is explicit (``peerToPeer: true`` or ``false``), so the tests mean the same whatever the
default is. Every test asserts where the guest runs afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.api.enums import Phase, Reason
from controller.api.status import DomainMigrationStatus
from controller.backends.protocol import Credentials, HostConfig
from controller.backends.registry import DriverTable
from controller.engine import Engine, StaticHosts
from tests.harness.libvirtd import LibvirtHost, LibvirtHosts
from tests.harness.pki import TestCA
from tests.harness.sshd import SshAccess
from tests.libvirt.lab import A, B, Lab, Recorder, copying, migration, report

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

MODES = [pytest.param(False, id="managed"), pytest.param(True, id="p2p")]


@pytest.fixture
def lab(clean_libvirt_hosts: LibvirtHosts, use_kvm: bool) -> Lab:
    return Lab(clean_libvirt_hosts, use_kvm)


def _mode(p2p: bool) -> dict[str, bool]:
    return {"peerToPeer": p2p}


@pytest.mark.parametrize("p2p", MODES)
async def test_migrates_over_tls(lab: Lab, p2p: bool) -> None:
    name = lab.idle_guest("tls")
    uris = (lab.hosts.a.tls_uri, lab.hosts.b.tls_uri)
    assert all(u.startswith("qemu+tls://") and "pkipath=" in u for u in uris)
    status, _, seconds = await lab.run(migration(name), uris=uris, options=_mode(p2p))
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    report("qemu+tls", p2p=p2p, kvm=lab.kvm, seconds=seconds, downtime_ms=status.downtime_ms)


@pytest.mark.parametrize("p2p", MODES)
async def test_the_migration_stream_itself_over_tls(lab: Lab, p2p: bool) -> None:
    """Flag ``tls``: QEMU encrypts the stream with its own certificates (qemu.conf's
    ``migrate_tls_x509_cert_dir``, verified both ways); seen in the source QEMU's parameters."""
    from tests.harness.integrity import qmp

    name = lab.dirtying_guest("tls-stream")
    seen: list[dict[str, object]] = []

    def look(_s: DomainMigrationStatus) -> None:
        conn = lab.hosts.a.open()
        try:
            seen.append(dict(qmp(conn.lookupByName(name), "query-migrate-parameters")))
        finally:
            conn.close()

    rec = Recorder(when=copying, then=look)
    flags = ["live", "persistDest", "undefineSource", "tls"]
    status, _, seconds = await lab.run(migration(name, flags=flags, params={"downtime": 3000}), rec, options=_mode(p2p))
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert seen and seen[0].get("tls-creds"), seen  # libvirt gave QEMU TLS credentials for the stream
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    integrity = lab.integrity(lab.hosts.b, name)
    assert integrity.pattern_found and integrity.corrupt_pages == 0, integrity.summary()
    report(
        "migration stream over TLS (flag tls)",
        p2p=p2p,
        seconds=seconds,
        tls_creds=seen[0].get("tls-creds"),
        tls_hostname=seen[0].get("tls-hostname"),
        memory=f"{integrity.corrupt_pages} corrupt of {integrity.pages} pages",
    )


def _secret_of(pkipath: Path) -> Credentials:
    """The Secret a user would make from a client's certificate files (keys named as libvirt names them)."""
    return Credentials(
        {name: (pkipath / name).read_text() for name in ("cacert.pem", "clientcert.pem", "clientkey.pem")}
    )


async def test_tls_certificates_from_the_hosts_secret(lab: Lab) -> None:
    """The URIs name no pkipath: the client certificate comes from the hosts' Secret (managed)."""
    name = lab.idle_guest("tls-secret")
    pkipath = lab.hosts.client_pki
    assert pkipath is not None
    secret = _secret_of(pkipath)
    configs = [
        HostConfig(A, "libvirt", _bare_tls(lab.hosts.a), "127.0.0.3", secret, {"peerToPeer": False}),
        HostConfig(B, "libvirt", _bare_tls(lab.hosts.b), "127.0.0.2", secret, {"peerToPeer": False}),
    ]
    status = await _run_with(lab, configs, name)
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None


async def test_peer_to_peer_tls_needs_the_source_hosts_own_certificate(lab: Lab) -> None:
    """Peer-to-peer, A's daemon opens B's URI with A's certificates (/etc/pki, which these hosts
    lack), not the operator's: the Secret cannot help it. The status says so; nothing moves."""
    name = lab.idle_guest("tls-secret-p2p")
    pkipath = lab.hosts.client_pki
    assert pkipath is not None
    secret = _secret_of(pkipath)
    configs = [
        HostConfig(A, "libvirt", _bare_tls(lab.hosts.a), "127.0.0.3", secret, {"peerToPeer": True}),
        HostConfig(B, "libvirt", _bare_tls(lab.hosts.b), "127.0.0.2", secret, {"peerToPeer": True}),
    ]
    status = await _run_with(lab, configs, name)
    assert status.phase is Phase.Failed, status.message
    assert status.message and "/etc/pki/CA/cacert.pem" in status.message and f"runs on {A}" in status.message
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None
    report("p2p tls without the source host's own certificate", message=status.message)


def _bare_tls(host: LibvirtHost) -> str:
    return host.tls_uri.partition("?")[0]


async def _run_with(lab: Lab, configs: list[HostConfig], name: str) -> DomainMigrationStatus:
    from controller.backends.libvirt.driver import LibvirtDriver

    engine = Engine(DriverTable({"libvirt": LibvirtDriver()}), StaticHosts(configs), lab.policy)
    try:
        return await engine.run(migration(name), Recorder())
    finally:
        await engine.drivers.close()


def _foreign_client(folder: Path) -> Path:
    """A client certificate from another CA: a well-formed one the daemons must not accept."""
    return TestCA(folder / "ca", "not the hosts' CA").client(folder / "client")


async def test_tls_with_a_certificate_from_another_ca_is_refused_before_anything_moves(
    lab: Lab, tmp_path: Path
) -> None:
    name = lab.idle_guest("tls-refused")
    foreign = _foreign_client(tmp_path)
    uris = (lab.hosts.a.spec.tls_uri(foreign), lab.hosts.b.spec.tls_uri(foreign))
    status, _, _ = await lab.run(migration(name), uris=uris, options=_mode(False))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.HostUnreachable), status.message
    assert status.message and "TLS: the client certificate" in status.message
    assert "username" not in status.message  # not the SASL hint
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None
    report("qemu+tls refused", message=status.message)


@pytest.mark.parametrize("p2p", MODES)
async def test_migrates_over_ssh(lab: Lab, ssh_access: SshAccess, p2p: bool) -> None:
    name = lab.idle_guest("ssh")
    uris = (ssh_access.uri(lab.hosts.a), ssh_access.uri(lab.hosts.b))
    status, _, seconds = await lab.run(migration(name), uris=uris, options=_mode(p2p))
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    report("qemu+ssh", p2p=p2p, kvm=lab.kvm, seconds=seconds, downtime_ms=status.downtime_ms)


async def test_ssh_with_a_key_the_host_does_not_accept_is_refused(
    lab: Lab, ssh_access: SshAccess, tmp_path: Path
) -> None:
    import subprocess

    stranger = tmp_path / "id_stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    name = lab.idle_guest("ssh-refused")
    uris = tuple(ssh_access.uri(h).replace(str(ssh_access.key), str(stranger)) for h in lab.hosts)
    assert len(uris) == 2
    status, _, _ = await lab.run(migration(name), uris=(uris[0], uris[1]), options=_mode(False))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.HostUnreachable), status.message
    assert status.message and "Permission denied (publickey)" in status.message
    assert lab.running_on(name) == [A] and lab.states(name)[B] is None
    report("qemu+ssh refused", message=status.message)


async def test_the_operator_migrates_over_tls_with_certificates_from_a_secret(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """kopf for real against the emulated API server: HypervisorHosts on bare ``qemu+tls://`` URIs
    whose credentialsSecretRef holds the client certificate; the key shows up nowhere."""
    import base64
    import logging

    from tests.kube.emulator import ApiServer, KopfOperator
    from tests.libvirt.test_operator import dmig, libvirt_host
    from tests.operator.conftest import CRDS, FAST, HANDLERS, NS, wait_phase

    caplog.set_level(logging.DEBUG)
    name = lab.idle_guest("tls-operator")
    pkipath = lab.hosts.client_pki
    assert pkipath is not None
    files = {n: (pkipath / n).read_text() for n in ("cacert.pem", "clientcert.pem", "clientkey.pem")}
    key_body = files["clientkey.pem"].splitlines()[1]  # a line of the private key itself
    with ApiServer(crds=CRDS) as kube:
        for k, v in {"KUBECONFIG": str(kube.kubeconfig), **FAST}.items():
            monkeypatch.setenv(k, v)
        async with KopfOperator(kube, HANDLERS):
            kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "libvirt-tls-client", "namespace": NS},
                    "data": {k: base64.b64encode(v.encode()).decode() for k, v in files.items()},
                }
            )
            for host, h in (("host-a", lab.hosts.a), ("host-b", lab.hosts.b)):
                doc = libvirt_host(host, _bare_tls(h), h.spec.migration_address)
                doc["spec"]["peerToPeer"] = False
                doc["spec"]["credentialsSecretRef"] = {"name": "libvirt-tls-client", "namespace": NS}
                kube.apply(doc)
            kube.apply(dmig("over-tls", name))
            done = await wait_phase(kube, "over-tls", {"Succeeded", "Failed", "Aborted"}, within=120)
            assert done["status"]["phase"] == "Succeeded", done["status"].get("message")
            objects = repr(
                [
                    *kube.list_objects("hypervisorhosts"),
                    *kube.list_objects("domainmigrations", NS),
                    *kube.list_objects("events", NS),
                ]
            )
        assert not kube.server_errors, kube.server_errors
    assert lab.running_on(name) == [B] and lab.states(name)[A] is None
    assert "over-tls" in objects
    assert key_body not in objects and key_body not in caplog.text
