"""`domig operator --log-format json|plain`: every line about a migration names it; no secret in any."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import subprocess
import sys
from contextvars import copy_context
from typing import Any

import pytest

from controller.operator import logs
from tests.backends.xendlab import xend_lab
from tests.kube.emulator import ApiServer
from tests.operator.conftest import NS, host, migration, until, wait_phase
from tests.operator.processes import domig_operator
from tests.operator.test_credentials import PASSWORD, xend_host

USERNAME = "migrator-u7Qz"  # unlike "root", a string no line would hold by chance
TRANSITION = re.compile(r"\b(Pending|Validating|Preparing|Migrating|Verifying) -> [A-Z][a-z]+: ")
ENDED = {"Succeeded", "Failed", "Aborted"}


def secret(name: str) -> dict[str, Any]:
    data = {"username": USERNAME, "password": PASSWORD}
    return {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }  # fmt: skip


def secret_forms() -> list[str]:
    """The credentials as they could leak: plain, as the Secret stores them, as HTTP basic auth."""
    basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    return [USERNAME, PASSWORD, base64.b64encode(PASSWORD.encode()).decode(), basic]


@pytest.mark.slow
async def test_json_lines_name_the_migration_and_hold_no_secret(kube: ApiServer) -> None:
    kube.create(secret("xen-creds"))
    async with xend_lab() as lab:
        kube.apply(xend_host("xen-a", lab.a.url, "xen-creds"))
        kube.apply(xend_host("xen-b", lab.b.url, "xen-creds"))
        # --verbose: the most the operator ever logs, kopf's debug lines included.
        with domig_operator(kube, "--log-format", "json", "--verbose") as op:
            kube.apply(migration("m-json", source="xen-a", destination="xen-b"))
            done = await wait_phase(kube, "m-json", ENDED, within=60)
            await until(lambda: f"-> {done['status']['phase']}" in op.output())  # logged just after the status patch
            metrics = (await op.scrape()).text
    assert done["status"]["phase"] == "Succeeded", op.stderr[-3000:]
    lines = [line for line in (op.stdout + op.stderr).splitlines() if line.strip()]
    parsed = []
    for line in lines:
        record = json.loads(line)  # every line, not only ours
        assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= record.keys(), line
        parsed.append(record)
    transitions = [r for r in parsed if TRANSITION.search(r["message"])]
    assert len(transitions) >= 5, [r["message"] for r in parsed][-40:]  # Pending -> Validating ... -> Succeeded
    about = [r for r in parsed if r.get("kind") == "DomainMigration"]
    assert transitions and all(r in about for r in transitions)
    assert all((r.get("namespace"), r.get("name")) == (NS, "m-json") for r in about)
    # Not only kopf's per-object logger: the HTTP client's lines from inside the daemon name it too.
    assert any(r["logger"].startswith("urllib3") for r in about)
    probes = [r for r in parsed if r.get("kind") == "HypervisorHost"]
    assert probes and all(r["name"] in {"xen-a", "xen-b"} and "namespace" not in r for r in probes)
    for text in (op.stdout, op.stderr, metrics):
        for form in secret_forms():
            assert form not in text


@pytest.mark.slow
async def test_plain_lines_are_prefixed_with_the_migration(kube: ApiServer, world: str) -> None:
    kube.create(secret("test-creds"))
    ref: dict[str, Any] = {"credentialsSecretRef": {"name": "test-creds", "namespace": NS}}
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 512}], **ref))
    kube.apply(host("host-b", world, **ref))
    with domig_operator(kube) as op:  # plain is the default
        kube.apply(migration("m-plain"))
        done = await wait_phase(kube, "m-plain", ENDED, within=60)
        await until(lambda: f"-> {done['status']['phase']}" in op.output())
    assert done["status"]["phase"] == "Succeeded", op.stderr[-3000:]
    lines = (op.stdout + op.stderr).splitlines()
    transitions = [line for line in lines if TRANSITION.search(line)]
    assert len(transitions) >= 5, lines[-40:]
    assert all(f"[{NS}/m-plain] " in line for line in transitions), transitions
    assert any("[host-a] " in line for line in lines)  # kopf's own lines about a host, cluster-scoped
    # kopf's "succeeded" after each watch event's look at a migration says nothing: not logged (but
    # kept with --verbose); the daemon's own end still is.
    assert not any("Handler 'edited_after_the_end' succeeded." in line for line in lines), lines[-40:]
    assert any(f"[{NS}/m-plain] Daemon 'migrate' succeeded." in line for line in lines), lines[-40:]
    for form in secret_forms():
        assert form not in op.stdout + op.stderr


def test_lines_from_any_logger_inside_a_handler_name_its_resource() -> None:
    """The engine and the backends log through their own loggers, not kopf's per-object one."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(logs.ObjectContext())
    handler.setFormatter(logs.JsonLines())
    engine = logging.getLogger("controller.engine.test-logs")
    engine.addHandler(handler)
    engine.propagate = False

    def in_a_handler() -> None:
        logs.about(
            {
                "apiVersion": "domig.dev/v1alpha1",
                "kind": "DomainMigration",
                "metadata": {"name": "m", "namespace": "ns"},
            }
        )
        engine.warning("the source stopped answering")

    try:
        engine.warning("before any resource")
        copy_context().run(in_a_handler)
        engine.warning("after it")
    finally:
        engine.removeHandler(handler)
    before, inside, after = (json.loads(line) for line in out.getvalue().splitlines())
    assert "name" not in before and "name" not in after
    assert (inside["namespace"], inside["name"], inside["kind"]) == ("ns", "m", "DomainMigration")
    assert inside["logger"] == "controller.engine.test-logs" and inside["level"] == "WARNING"
    assert inside["message"] == "the source stopped answering"


def test_in_json_a_warning_and_a_crash_are_json_lines_too() -> None:
    program = (
        "import warnings; from controller.operator import logs; logs.configure('json'); "
        "warnings.warn('old'); raise RuntimeError('boom')"
    )
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert run.returncode == 1 and run.stdout == ""
    warned, crashed = (json.loads(line) for line in run.stderr.splitlines())
    assert warned["logger"] == "py.warnings" and "old" in warned["message"]
    assert crashed["level"] == "CRITICAL" and crashed["message"] == "uncaught RuntimeError: boom"
    assert "Traceback" in crashed["exception"]
