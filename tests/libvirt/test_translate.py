"""The libvirt driver's translations (no daemon needed): flags, parameters, URIs, job statistics."""

from __future__ import annotations

import pytest

from controller.api.enums import MigrationFlag
from controller.api.status import DomainState
from controller.backends.libvirt.translate import (
    finished_phase,
    flags_of,
    job_of,
    migrate_uri,
    params_of,
    running_migration,
    state_of,
    supported_params,
)
from controller.backends.protocol import JobPhase, MigrationRequest


def test_flags_are_libvirts_bits() -> None:
    assert flags_of([MigrationFlag.live, MigrationFlag.persistDest, MigrationFlag.undefineSource]) == 1 | 8 | 16
    assert flags_of([MigrationFlag.postCopy], peer_to_peer=True) == (1 << 15) | 2
    assert flags_of([]) == 0


@pytest.mark.parametrize(
    ("given", "uri"),
    [
        ("127.0.0.2", "tcp://127.0.0.2"),
        ("host-b", "tcp://host-b"),
        ("host-b:49152", "tcp://host-b:49152"),
        ("fd00::2", "tcp://[fd00::2]"),
        ("rdma://10.0.0.2", "rdma://10.0.0.2"),
    ],
)
def test_migrate_uri_from_a_hostname(given: str, uri: str) -> None:
    assert migrate_uri(given) == uri


def test_params_rename_uri_lists_and_downtime_later() -> None:
    request = MigrationRequest(
        domain="web",
        hostname="10.0.0.2",
        dname="web-blue",
        params={"bandwidth": 10, "downtime": 250, "migrate_disks": "vda, vdb", "compression": "xbzrle"},
    )
    assert params_of(request, with_uri=True) == {
        "migrate_uri": "tcp://10.0.0.2",
        "destination_name": "web-blue",
        "bandwidth": 10,
        "migrate_disks": ["vda", "vdb"],
        "compression": ["xbzrle"],
    }
    assert "migrate_uri" not in params_of(request, with_uri=False)


def test_supported_params_follow_the_library_and_never_xen() -> None:
    names = supported_params(["bandwidth", "migrate_disks", "xen.port", "unknown"])
    assert names == {"bandwidth", "migrate_disks", "downtime"}


def test_job_stats_to_job_info() -> None:
    stats = {
        "type": 2,
        "operation": 5,
        "data_total": 1000,
        "data_processed": 400,
        "data_remaining": 600,
        "memory_bps": 50,
        "memory_dirty_rate": 3,
        "memory_page_size": 4096,
        "memory_iteration": 2,
        "time_elapsed": 1500,
    }
    assert running_migration(stats)
    info = job_of(stats, JobPhase.active, iteration=3)
    assert (info.data_total, info.data_processed, info.data_remaining) == (1000, 400, 600)
    assert info.dirty_rate == 3 * 4096 and info.iteration == 3 and info.elapsed_ms == 1500
    setting_up = job_of({**stats, "data_total": 0, "data_processed": 0, "data_remaining": 0}, JobPhase.active)
    assert (setting_up.data_total, setting_up.data_remaining) == (None, None)


def test_finished_jobs_and_states() -> None:
    assert finished_phase({"type": 3, "operation": 5}) is JobPhase.completed
    assert finished_phase({"type": 4, "operation": 5}) is JobPhase.failed
    assert finished_phase({"type": 5, "operation": 5}) is JobPhase.cancelled
    assert finished_phase({"type": 3, "operation": 4}) is None  # an incoming migration is not ours
    assert not running_migration({"type": 0})
    assert [state_of(s) for s in (1, 3, 5, 6, 7)] == [
        DomainState.running,
        DomainState.paused,
        DomainState.shutoff,
        DomainState.crashed,
        DomainState.paused,
    ]


def test_peer_to_peer_is_a_libvirt_host_option() -> None:
    from controller.api.errors import SpecError
    from controller.api.hypervisor_host import HypervisorHost
    from controller.engine import host_config

    doc = {"kind": "HypervisorHost", "metadata": {"name": "a"}, "spec": {"driver": "libvirt", "uri": "qemu:///system"}}
    assert host_config(HypervisorHost.parse(doc)).options == {}
    doc["spec"]["peerToPeer"] = True  # type: ignore[index]
    assert host_config(HypervisorHost.parse(doc)).options == {"peerToPeer": True}
    doc["spec"]["peerToPeer"] = False  # type: ignore[index]
    assert host_config(HypervisorHost.parse(doc)).options == {"peerToPeer": False}  # managed, as asked
    doc["spec"]["driver"] = "test"  # type: ignore[index]
    with pytest.raises(SpecError, match="peerToPeer"):
        HypervisorHost.parse(doc)


async def test_unreachable_host_with_credentials_keeps_the_secret_out() -> None:
    pytest.importorskip("libvirt")
    from controller.api.enums import Reason
    from controller.backends.libvirt.driver import LibvirtDriver
    from controller.backends.libvirt.errors import redact
    from controller.backends.protocol import BackendError, Credentials, HostConfig

    secret = "s3cret-pw"
    creds = Credentials({"username": "admin", "password": secret})
    assert redact(f"auth failed for {secret}", creds) == "auth failed for ***"
    driver = LibvirtDriver()
    try:
        host = HostConfig("nowhere", "libvirt", "qemu+tcp://127.0.0.1:1/system", credentials=creds)
        with pytest.raises(BackendError) as caught:
            await driver.connect(host)
    finally:
        await driver.close()
    assert caught.value.reason is Reason.HostUnreachable
    assert secret not in str(caught.value) and secret not in repr(host)


def test_auth_failures_name_the_host_and_missing_credentials() -> None:
    libvirt = pytest.importorskip("libvirt")
    from controller.api.enums import Reason
    from controller.backends.libvirt.errors import connect_error
    from controller.backends.protocol import Credentials, HostConfig

    def error(code: int, message: str) -> object:
        exc = libvirt.libvirtError(message)
        exc.err = (code, 0, message, 2, None, None, None, 0, 0)  # what virGetLastError() returns
        return exc

    creds = Credentials({"username": "admin", "password": "s3cret-pw"})
    auth = error(libvirt.VIR_ERR_AUTH_FAILED, "authentication failed: authentication failed")
    with_creds = connect_error(auth, HostConfig("host-c", "libvirt", "qemu+tcp://h/system", credentials=creds))
    assert (with_creds.message, with_creds.reason) == ("authentication failed for host-c: authentication failed",
                                                       Reason.HostUnreachable)  # fmt: skip
    without = connect_error(auth, HostConfig("host-c", "libvirt", "qemu+tcp://h/system"))
    assert without.message.startswith("authentication failed for host-c (no credentials: set spec.credentialsSecretRef")
    refused = error(libvirt.VIR_ERR_SYSTEM_ERROR, "unable to connect to server at 'h:16509': Connection refused")
    plain = connect_error(refused, HostConfig("host-c", "libvirt", "qemu+tcp://h/system", credentials=creds))
    assert (plain.message, plain.reason) == ("unable to connect to server at 'h:16509': Connection refused",
                                             Reason.HostUnreachable)  # fmt: skip
    # A refused certificate is an auth failure to libvirt too; a TLS host hears about certificates.
    cert = error(libvirt.VIR_ERR_AUTH_FAILED, "authentication failed: Failed to verify peer's certificate")
    for uri in ("qemu+tls://h/system?pkipath=/p", "qemu://h/system"):
        tls = connect_error(cert, HostConfig("host-t", "libvirt", uri))
        assert tls.message.startswith("authentication failed for host-t (TLS: the client certificate"), tls.message
        assert "username" not in tls.message and tls.message.endswith(": Failed to verify peer's certificate")
    over_ssh = connect_error(cert, HostConfig("host-s", "libvirt", "qemu+ssh://root@h/system"))
    assert "TLS" not in over_ssh.message


def test_a_zero_dirty_rate_in_the_first_pass_is_not_measured_yet() -> None:
    stats = {"type": 2, "data_total": 1000, "data_remaining": 600, "memory_bps": 50, "memory_dirty_rate": 0}
    assert job_of({**stats, "memory_iteration": 1}, JobPhase.active).dirty_rate is None
    assert job_of({**stats, "memory_iteration": 2}, JobPhase.active).dirty_rate == 0  # measured: an idle guest


def test_the_destination_refusing_the_guest_cpu_is_target_failed() -> None:
    libvirt = pytest.importorskip("libvirt")
    from controller.api.enums import Reason
    from controller.backends.libvirt.errors import backend_error

    exc = libvirt.libvirtError(
        "the CPU is incompatible with host CPU: Host CPU does not provide required features: svm"
    )
    exc.err = (libvirt.VIR_ERR_CPU_INCOMPATIBLE, 0, str(exc), 2, None, None, None, 0, 0)
    assert backend_error(exc, None).reason is Reason.TargetFailed  # the guest never left the source


def test_tls_certificates_from_a_secret_become_a_private_pkipath() -> None:
    import stat
    from pathlib import Path
    from urllib.parse import parse_qs, urlsplit

    from controller.api.enums import Reason
    from controller.backends.libvirt.pki import client_uri
    from controller.backends.protocol import BackendError, Credentials, HostConfig

    files = {"cacert.pem": "CA\n", "clientcert.pem": "CERT\n", "clientkey.pem": "KEY\n"}
    host = HostConfig("host-t", "libvirt", "qemu+tls://h:16514/system", credentials=Credentials(files))
    uri = client_uri(host)
    folder = Path(parse_qs(urlsplit(uri).query)["pkipath"][0])
    assert uri.startswith("qemu+tls://h:16514/system?pkipath=")
    assert {p.name: p.read_text() for p in folder.iterdir()} == files
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "clientkey.pem").stat().st_mode) & 0o077 == 0
    assert client_uri(host) == uri  # written once
    with_query = HostConfig("host-t", "libvirt", "qemu+tls://h/system?no_tty=1", credentials=Credentials(files))
    assert client_uri(with_query).startswith("qemu+tls://h/system?no_tty=1&pkipath=")
    own = HostConfig("host-t", "libvirt", "qemu+tls://h/system?pkipath=/etc/x", credentials=Credentials(files))
    assert client_uri(own) == own.uri  # the URI's own folder wins
    sasl = HostConfig("host-t", "libvirt", "qemu+tcp://h/system", credentials=Credentials({"username": "u"}))
    assert client_uri(sasl) == sasl.uri
    partial = HostConfig("host-t", "libvirt", "qemu+tls://h/system", credentials=Credentials({"clientcert.pem": "C"}))
    with pytest.raises(BackendError) as caught:
        client_uri(partial)
    assert caught.value.reason is Reason.HostUnreachable
    assert "has TLS certificates but not cacert.pem, clientkey.pem" in caught.value.message
