"""A host's credentials are used, and never shown: not in status, Events, logs or /metrics.

Per driver, a migration that succeeds and migrations that fail (an unreachable host; for xend a
host that answers 401, i.e. refuses the credentials), then everything the operator wrote is
searched for the password, its base64 (as a Secret's data holds it) and the HTTP basic-auth
token (base64 of user:password, as xend's requests carry it). libvirt with SASL is in
tests/libvirt/test_sasl.py, with the same search (`leaks`).
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import REGISTRY, generate_latest

from tests.backends.xendlab import xend_lab
from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, migration, until, wait_phase

USER = "root"
ENDED = {"Succeeded", "Failed", "Aborted"}


def secret(name: str, username: str, password: str) -> dict[str, Any]:
    data = {"username": username, "password": password}
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


def forms(username: str, password: str) -> list[str]:
    """Every form in which a password could leak: as is, as a Secret holds it, as basic auth."""
    return [
        password,
        base64.b64encode(password.encode()).decode(),
        base64.b64encode(f"{username}:{password}".encode()).decode(),
    ]


def everything(kube: ApiServer) -> str:
    """All that the operator wrote that users read: hosts, migrations (every namespace), Events."""
    objects = [*kube.list_objects("hypervisorhosts"), *kube.list_objects("domainmigrations")]
    return repr([*objects, *kube.list_objects("events")])


def leaks(kube: ApiServer, logs: str, passwords: Iterable[tuple[str, str]]) -> list[str]:
    """Where any form of any password shows: status and Events, logs, /metrics."""
    places = {"status and events": everything(kube), "logs": logs, "metrics": generate_latest(REGISTRY).decode()}
    return [
        f"{form!r} of {username}'s password in {where}"
        for username, password in passwords
        for form in forms(username, password)
        for where, text in places.items()
        if form in text
    ]


def ended(kube: ApiServer, name: str) -> str:
    status = (kube.read("domainmigrations", name, NS) or {}).get("status") or {}
    return str(status.get("phase")) if status.get("phase") in ENDED or status.get("reason") else ""


async def test_the_test_driver(
    kube: ApiServer, operator: KopfOperator, world: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    password = "td-" + secrets.token_urlsafe(16)
    kube.create(secret("creds", USER, password))
    ref = {"credentialsSecretRef": {"name": "creds", "namespace": NS}}
    kube.apply(host("host-a", world, [{"name": "web"}, {"name": "db"}], **ref))
    kube.apply(host("host-b", world, **ref))
    kube.apply(host("host-down", world, faults={"unreachable": True}, **ref))
    kube.apply(migration("ok"))
    assert (await wait_phase(kube, "ok", ENDED))["status"]["phase"] == "Succeeded"
    kube.apply(migration("down", domain="db", destination="host-down"))
    await until(lambda: ended(kube, "down"))
    down = (kube.read("hypervisorhosts", "host-down") or {}).get("status") or {}
    assert down.get("reachable") is False
    assert "creds" in everything(kube)  # what we search holds the hosts, with their Secret's name
    assert not leaks(kube, caplog.text, [(USER, password)])
    assert leaks(kube, f"logged {password}!", [(USER, password)])  # the search finds one when there is one


@asynccontextmanager
async def refusing_xend() -> AsyncIterator[tuple[str, list[str]]]:
    """An xend that refuses every request with 401, as one behind basic auth does a wrong
    password; its URL, and the Authorization headers it was sent."""
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=401, text="401 Unauthorized: authentication required")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        address = runner.addresses[0]
        yield f"xend+http://{address[0]}:{address[1]}", seen
    finally:
        await runner.cleanup()


def xend_host(name: str, url: str, secret_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name},
        "spec": {"driver": "xend", "uri": url, "credentialsSecretRef": {"name": secret_name, "namespace": NS}},
    }  # fmt: skip


async def test_xend_with_an_accepted_and_a_refused_password(
    kube: ApiServer, operator: KopfOperator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good, bad = "xg-" + secrets.token_urlsafe(16), "xb-" + secrets.token_urlsafe(16)
    kube.create(secret("xen-creds", USER, good))
    kube.create(secret("xen-wrong", "admin", bad))
    async with xend_lab() as lab, refusing_xend() as (locked_url, sent):
        kube.apply(xend_host("xen-a", lab.a.url, "xen-creds"))
        kube.apply(xend_host("xen-b", lab.b.url, "xen-creds"))
        kube.apply(xend_host("xen-locked", locked_url, "xen-wrong"))
        kube.apply(migration("m", source="xen-a", destination="xen-b"))
        done = await wait_phase(kube, "m", ENDED)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        # Refused credentials: on the host's probe, and for a migration to it and from it.
        kube.apply(migration("to-locked", source="xen-b", destination="xen-locked"))
        kube.apply(migration("from-locked", source="xen-locked", destination="xen-a"))

        def probed() -> str:
            return str(((kube.read("hypervisorhosts", "xen-locked") or {}).get("status") or {}).get("message") or "")

        await until(probed)
        await until(lambda: ended(kube, "to-locked") and ended(kube, "from-locked"))
        assert "401" in probed() or "Unauthorized" in probed() or "authentication" in probed(), probed()
    # The credentials were sent (the refusing xend saw them), and never shown.
    assert base64.b64encode(f"admin:{bad}".encode()).decode() in " ".join(sent)
    assert not leaks(kube, caplog.text, [(USER, good), ("admin", bad)])
