"""SASL credentials through libvirt's auth callback, against a real SASL-enabled libvirtd.

The operator's part: probes and migrations with a good and a refused password, then status,
Events, logs and /metrics searched for either password in any form (`leaks`).

Host C (``sasl_libvirt_host``) listens on ``qemu+tcp://127.0.0.4:16511/system`` with
``auth_tcp = "sasl"`` and ``mech_list: digest-md5``; its sasldb holds one user whose password is
random per run, so finding it anywhere (error, repr, log, Kubernetes object) is a real leak.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
import traceback
from typing import Any

import pytest

from controller.api.enums import Reason
from controller.backends.libvirt.driver import LibvirtDriver
from controller.backends.protocol import BackendError, Connection, Credentials, HostConfig
from tests.harness.libvirtd import SaslLibvirtHost
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import CRDS, FAST, HANDLERS, NS, until
from tests.operator.test_secrets_never_shown import everything, leaks

pytestmark = [pytest.mark.libvirt]

CONNECT_WITHIN = 15.0  # seconds; a SASL handshake on loopback takes milliseconds


def config(host: SaslLibvirtHost, credentials: dict[str, str] | None, name: str = "host-c") -> HostConfig:
    return HostConfig(name, "libvirt", host.uri, credentials=Credentials(credentials) if credentials else None)


async def connect(driver: LibvirtDriver, cfg: HostConfig) -> Connection:
    async with asyncio.timeout(CONNECT_WITHIN):
        return await driver.connect(cfg)


async def refused(cfg: HostConfig) -> tuple[BackendError, float]:
    """Connect, expecting a BackendError well within CONNECT_WITHIN (a hang fails the test)."""
    driver = LibvirtDriver()
    started = time.monotonic()
    try:
        with pytest.raises(BackendError) as info:
            await connect(driver, cfg)
    finally:
        await driver.close()
    return info.value, time.monotonic() - started


def shown(error: BaseException) -> str:
    """Everything a log line with this exception would print (message, repr, traceback)."""
    return f"{error} {error!r} {''.join(traceback.format_exception(error))}"


async def test_sasl_credentials_log_in(sasl_libvirt_host: SaslLibvirtHost, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    host = sasl_libvirt_host
    cfg = config(host, host.credentials)
    expected = host.open()  # the harness's own SASL login, for comparison
    try:
        hostname = expected.getHostname()
    finally:
        expected.close()
    driver = LibvirtDriver()
    try:
        conn = await connect(driver, cfg)
        try:
            assert await conn.hostname() == hostname
            assert await conn.list_domains() == []  # host C runs no guests
            assert (await conn.version()).strip()
        finally:
            await conn.close()
    finally:
        await driver.close()
    assert host.password not in repr(cfg) and host.password not in str(cfg)
    assert host.password not in caplog.text


@pytest.mark.parametrize("wrong", ["password", "username"])
async def test_wrong_credentials_are_refused_and_never_shown(
    sasl_libvirt_host: SaslLibvirtHost, wrong: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = sasl_libvirt_host
    bad_password = "wrong-" + secrets.token_urlsafe(12)
    if wrong == "password":
        credentials = {"username": host.username, "password": bad_password}
    else:  # the right password for a user the sasldb does not hold
        credentials = {"username": "nobody", "password": host.password}
    cfg = config(host, credentials)
    error, elapsed = await refused(cfg)
    assert error.reason is Reason.HostUnreachable
    assert error.message.startswith("authentication failed for host-c: "), error.message
    assert elapsed < 5, elapsed
    for secret in (host.password, bad_password):
        assert secret not in shown(error)
        assert secret not in repr(cfg) and secret not in str(cfg)
        assert secret not in caplog.text


@pytest.mark.parametrize("given", ["nothing", "username only"])
async def test_missing_credentials_fail_clearly_not_hang(
    sasl_libvirt_host: SaslLibvirtHost, given: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = sasl_libvirt_host
    credentials = None if given == "nothing" else {"username": host.username}
    error, elapsed = await refused(config(host, credentials))
    assert error.reason is Reason.HostUnreachable
    assert error.message.startswith("authentication failed for host-c"), error.message
    if credentials is None:
        assert "no credentials: set spec.credentialsSecretRef" in error.message
    assert elapsed < 5, elapsed
    assert host.password not in shown(error) and host.password not in caplog.text


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


def sasl_host(name: str, uri: str, secret_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name},
        "spec": {"driver": "libvirt", "uri": uri, "credentialsSecretRef": {"name": secret_name, "namespace": NS}},
    }  # fmt: skip


def sasl_migration(name: str, source: str, destination: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "domig.dev/v1alpha1", "kind": "DomainMigration", "metadata": {"name": name, "namespace": NS},
        "spec": {"domain": "web", "source": source, "destination": destination, "flags": ["live"], **spec},
    }  # fmt: skip


def ended(kube: ApiServer, name: str) -> dict[str, Any] | None:
    status = (kube.read("domainmigrations", name, NS) or {}).get("status") or {}
    done = status.get("phase") in ("Succeeded", "Failed", "Aborted") or (
        status.get("phase") == "Pending" and status.get("reason")
    )
    return dict(status) if done else None


def status_of(kube: ApiServer, name: str) -> dict[str, Any]:
    return dict((kube.read("hypervisorhosts", name) or {}).get("status") or {})


def ready(status: dict[str, Any]) -> str | None:
    return next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)


async def test_the_operator_logs_in_with_a_secret(
    sasl_libvirt_host: SaslLibvirtHost, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = sasl_libvirt_host
    bad_password = "wrong-" + secrets.token_urlsafe(12)
    with ApiServer(crds=CRDS) as kube:
        for key, value in {"KUBECONFIG": str(kube.kubeconfig), **FAST}.items():
            monkeypatch.setenv(key, value)
        async with KopfOperator(kube, HANDLERS):
            kube.create(secret("host-c-login", host.credentials))
            kube.create(secret("host-c-bad", {"username": host.username, "password": bad_password}))
            kube.apply(sasl_host("host-c", host.uri, "host-c-login"))
            # The same daemon with a wrong password: its error goes into status and events.
            kube.apply(sasl_host("host-c-bad", host.uri, "host-c-bad"))

            def probed(name: str) -> dict[str, Any] | None:
                status = status_of(kube, name)
                return status if ready(status) in ("True", "False") else None

            good = await until(lambda: probed("host-c"), within=60)
            assert good["reachable"] is True, good
            assert ready(good) == "True", good
            assert good["message"] == ""
            assert good["domainCount"] == 0 and good["hostname"]

            bad = await until(lambda: probed("host-c-bad"), within=60)
            assert bad["reachable"] is False and ready(bad) == "False", bad
            assert "authentication failed for host-c-bad" in bad["message"], bad

            # Migrations with these credentials: one from host C, which runs no guests (Failed), and
            # two with the host whose password is refused (Pending while it is not Ready); each
            # says why in its status and Events.
            kube.apply(sasl_migration("from-c", "host-c", "host-c", dname="web-copy"))
            kube.apply(sasl_migration("to-bad", "host-c", "host-c-bad"))
            kube.apply(sasl_migration("from-bad", "host-c-bad", "host-c"))
            for name in ("from-c", "to-bad", "from-bad"):
                done = await until(lambda name=name: ended(kube, name), within=60)
                assert done["reason"] and done["message"], done
            assert ended(kube, "from-c")["phase"] == "Failed"  # type: ignore[index]
            said = ended(kube, "from-bad")["message"]  # type: ignore[index]
            assert "host-c-bad" in said, said
            objects = everything(kube)
            found = leaks(kube, caplog.text, [(host.username, host.password), (host.username, bad_password)])
        assert not kube.server_errors, kube.server_errors
    assert "host-c-bad" in objects and "from-bad" in objects  # the listing holds what we look through
    assert not found, found
