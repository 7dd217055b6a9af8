"""pytest fixtures for tests that need two real libvirtd daemons.

Import them into a conftest.py::

    from tests.harness.fixtures import clean_libvirt_hosts, libvirt_hosts, use_kvm  # noqa: F401

* ``libvirt_hosts`` (session): a started :class:`~tests.harness.libvirtd.LibvirtHosts`; skips
  the test with the reason when libvirtd/QEMU/libvirt-python are missing or we are not root.
* ``clean_libvirt_hosts`` (function): the same object; destroys and undefines every domain on
  both hosts after the test, so tests do not see each other's guests.
* ``use_kvm`` (session): True when /dev/kvm is usable (``DOMIG_LIBVIRT_KVM=0`` forces TCG).
* ``sasl_libvirt_host`` (module): a started :class:`~tests.harness.libvirtd.SaslLibvirtHost`, host C
  on ``qemu+tcp://127.0.0.4:16511/system`` demanding SASL (DIGEST-MD5); its ``username`` and
  ``password`` (random per run) log in. Skips when libvirtd or Cyrus SASL's tools are missing;
  independent of ``libvirt_hosts`` (A and B are neither needed nor disturbed).
* ``ssh_access`` (module): an sshd in each of A's and B's mount namespaces (127.0.0.1:16522,
  127.0.0.2:16523) letting in a user key made for the run; ``ssh_access.uri(host)`` is its
  ``qemu+ssh://`` URI (see :mod:`tests.harness.sshd`). Skips when openssh-server is missing.

A and B also listen for TLS (127.0.0.1:16514, 127.0.0.2:16515) with certificates made for the
run (:mod:`tests.harness.pki`): ``host.tls_uri`` names the client's (``?pkipath=``).

Environment: ``DOMIG_LIBVIRT_KEEP=1`` keeps the daemons' folders (logs, configs) after the run;
``DOMIG_LIBVIRT_CAPS_CACHE`` moves (or, set empty, disables) the persistent QEMU-capabilities cache.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from .libvirtd import LibvirtHosts, SaslLibvirtHost, kvm_usable, missing_prerequisites, missing_sasl_prerequisites
from .sshd import SshAccess, missing_ssh_prerequisites


@pytest.fixture(scope="session")
def libvirt_hosts() -> Iterator[LibvirtHosts]:
    missing = missing_prerequisites()
    if missing:
        pytest.skip("real libvirt not available: " + "; ".join(missing))
    import libvirt

    # libvirt prints every error to stderr by default (noisy while polling the daemons);
    # errors still raise libvirtError.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    hosts = LibvirtHosts(keep=os.environ.get("DOMIG_LIBVIRT_KEEP") == "1")
    hosts.start()
    print(
        f"\nlibvirt harness: daemons answered after {hosts.startup_seconds:.2f}s,"
        f" QEMU probe {hosts.warm_up_seconds:.2f}s; state in {hosts.root}",
        file=sys.stderr,
    )
    try:
        yield hosts
    finally:
        hosts.stop()


@pytest.fixture
def clean_libvirt_hosts(libvirt_hosts: LibvirtHosts) -> Iterator[LibvirtHosts]:
    try:
        yield libvirt_hosts
    finally:
        for host in libvirt_hosts:
            host.destroy_all_domains()


@pytest.fixture(scope="session")
def use_kvm() -> bool:
    if os.environ.get("DOMIG_LIBVIRT_KVM", "").strip() in ("0", "no", "false"):
        return False
    return kvm_usable()


@pytest.fixture(scope="module")
def sasl_libvirt_host() -> Iterator[SaslLibvirtHost]:
    missing = missing_sasl_prerequisites()
    if missing:
        pytest.skip("SASL-enabled libvirtd not available: " + "; ".join(missing))
    import libvirt

    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    host = SaslLibvirtHost(keep=os.environ.get("DOMIG_LIBVIRT_KEEP") == "1")
    host.start()
    print(
        f"\nlibvirt harness: SASL daemon ({host.mech}) answered after {host.startup_seconds:.2f}s;"
        f" state in {host.root}",
        file=sys.stderr,
    )
    try:
        yield host
    finally:
        host.stop()


SSH_PORTS = {"a": ("127.0.0.1", 16522), "b": ("127.0.0.2", 16523)}


@pytest.fixture(scope="module")
def ssh_access(libvirt_hosts: LibvirtHosts) -> Iterator[SshAccess]:
    missing = missing_ssh_prerequisites()
    if missing:
        pytest.skip("sshd not available: " + "; ".join(missing))
    access = SshAccess([(h, *SSH_PORTS[h.name]) for h in libvirt_hosts], libvirt_hosts.root / "ssh")
    access.start()
    try:
        yield access
    finally:
        access.stop()
