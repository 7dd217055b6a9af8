"""The issue's own check, as a new user would run it: `domig operator` on this machine with its
webhook on loopback, documents applied to the API server, `kubectl domig`, `/metrics`.

One scenario, in order: bad documents refused at apply time naming the field; a rename on an xend
host refused with NoSupport; a migration that runs (the active gauge shows it) and is edited after
the end (still Ready, generation observed); there and back; `kubectl domig migrate Web_DB.1`.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.health.kstatus import kstatus
from tests.kube.emulator import ApiError, ApiServer
from tests.operator.conftest import FAST, NS, host, migration, until, wait_phase, where
from tests.operator.test_plugin import plugin


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture
def domig_operator(kube: ApiServer) -> Iterator[dict[str, Any]]:
    webhook_port, metrics_port = free_ports(2)
    env = {**os.environ, **FAST, "KUBECONFIG": str(kube.kubeconfig)}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli.main", "operator", "--standalone",
             "--webhook-listen", f"127.0.0.1:{webhook_port}", "--metrics-port", str(metrics_port)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield {"metrics": f"http://127.0.0.1:{metrics_port}/metrics", "log": log}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.seek(0)
            print(log.read().decode(errors="replace")[-4000:])


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return reply.read().decode()  # type: ignore[no-any-return]


def refused(kube: ApiServer, document: dict[str, Any]) -> str:
    with pytest.raises(ApiError) as info:
        kube.create(document)
    return str(info.value) + json.dumps(info.value.details or {})


BAD = [
    ({"flags": ["offline", "persistDest", "autoConverge"]}, "spec.flags"),
    ({"flags": ["live", "live"]}, "spec.flags[1]"),
    ({"params": {"downtime": -1}}, "spec.params[downtime]"),
    ({"params": {"downtime": "fast"}}, "spec.params[downtime]"),
    ({"params": {"xen.port": 99999}}, "spec.params[xen.port]"),
    ({"params": {"Not A Name": 1}}, "spec.params"),
]


@pytest.mark.slow
async def test_the_issue_check_as_a_user(kube: ApiServer, world: str, domig_operator: dict[str, Any]) -> None:
    await until(lambda: (kube.read("validatingwebhookconfigurations", "domig.dev") or {}).get("webhooks"), within=30)

    for spec, field in BAD:
        text = refused(kube, migration("bad", **spec))
        assert field in text, (spec, text)

    kube.apply({"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": "xen-a"},
                "spec": {"driver": "xend", "uri": "xend+http://127.0.0.1:1"}})  # fmt: skip
    await asyncio.sleep(1)  # the operator's host index follows its watch
    text = refused(kube, migration("rename", source="xen-a", destination="xen-a", dname="web2"))
    assert "spec.dname: NoSupport: the xend driver does not support renaming" in text, text

    web = [{"name": "web", "memoryMiB": 4096, "dirtyRateMiBps": 10}, {"name": "Web_DB.1", "memoryMiB": 512}]
    kube.apply(host("host-a", world, web, linkMiBps=1000))
    kube.apply(host("host-b", world, linkMiBps=1000))
    kube.apply(migration("there", params={"bandwidth": 500}))
    await wait_phase(kube, "there", {"Migrating"})
    assert "domig_migrations_active 1.0" in scrape(domig_operator["metrics"])
    await wait_phase(kube, "there", {"Succeeded"}, within=60)

    kube.patch_object("domainmigrations", "there", {"spec": {"params": {"bandwidth": 100}}}, NS)
    await until(lambda: (o := kube.read("domainmigrations", "there", NS)) and  # type: ignore[union-attr]
                o["status"].get("observedGeneration") == o["metadata"]["generation"] == 2, within=10)  # fmt: skip
    obj = kube.read("domainmigrations", "there", NS)
    assert obj is not None and kstatus(obj)[0] == "Current"
    assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"] == "True"

    kube.apply(migration("back", source="host-b", destination="host-a"))
    done = await wait_phase(kube, "back", {"Succeeded", "Failed"}, within=60)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert where(world)["host-a"] == "running"

    code, out, err = await plugin(kube, "-o", "json", "--interval", "0.2", "migrate", "Web_DB.1",
                                  "--from", "host-a", "--to", "host-b", "--wait")  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["phase"] == "Succeeded"
    assert where(world, "Web_DB.1") == {"host-a": "shutoff", "host-b": "running"}
    assert "domig_migrations_active 0.0" in scrape(domig_operator["metrics"])
