"""Host credentials come from a Secret and never show up in status, events or logs."""

from __future__ import annotations

import base64
import logging
import socket

import pytest

from tests.backends.xendlab import xend_lab
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, migration, until, wait_phase

PASSWORD = "s3cr3t-Pa55-do-not-print"


def secret(name: str) -> dict[str, object]:
    data = {"username": "root", "password": PASSWORD}
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


def xend_host(name: str, url: str, secret_name: str) -> dict[str, object]:
    return {
        "apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name},
        "spec": {"driver": "xend", "uri": url, "credentialsSecretRef": {"name": secret_name, "namespace": NS}},
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def everything(kube: ApiServer) -> str:
    objects = [*kube.list_objects("hypervisorhosts"), *kube.list_objects("domainmigrations", NS)]
    objects += kube.list_objects("events", NS)
    return repr(objects)


async def test_secrets_are_used_but_never_shown(
    kube: ApiServer, operator: KopfOperator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kube.create(secret("xen-creds"))
    async with xend_lab() as lab:
        kube.apply(xend_host("xen-a", lab.a.url, "xen-creds"))
        kube.apply(xend_host("xen-b", lab.b.url, "xen-creds"))
        # A host that refuses connections: its error goes into status and events.
        kube.apply(xend_host("xen-down", f"xend+http://127.0.0.1:{free_port()}", "xen-creds"))
        kube.apply(migration("m", source="xen-a", destination="xen-b"))
        done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"})
        assert done["status"]["phase"] == "Succeeded", done["status"]["message"]
        kube.apply(migration("m2", domain="web", source="xen-b", destination="xen-down"))
        await until(lambda: (kube.read("hypervisorhosts", "xen-down") or {}).get("status", {}).get("message"))
    assert PASSWORD not in everything(kube)
    assert PASSWORD not in caplog.text


async def test_a_missing_secret_keeps_the_host_not_ready(kube: ApiServer, operator: KopfOperator) -> None:
    kube.apply(xend_host("xen-a", "xend+http://127.0.0.1:1", "nope"))

    def message() -> str:
        return str((kube.read("hypervisorhosts", "xen-a") or {}).get("status", {}).get("message") or "")

    await until(message)
    assert "credentials Secret default/nope does not exist" in message()
