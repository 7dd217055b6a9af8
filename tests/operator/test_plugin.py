"""`kubectl domig` (the kubectl-domig plugin) as a process against the API server, the operator running."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys

import pytest

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, host, until, where


async def plugin(kube: ApiServer, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "controller.cli.plugin", *args,
        env={**os.environ, "KUBECONFIG": str(kube.kubeconfig)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_migrate_wait_list_hosts(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 2048}]))
    kube.apply(host("host-b", world))
    code, out, err = await plugin(
        kube, "-o", "json", "--interval", "0.2", "migrate", "web", "--from", "host-a", "--to", "host-b",
        "--flag", "live", "--flag", "undefineSource", "--param", "bandwidth=1000", "--wait",
    )  # fmt: skip
    assert code == 0, err
    status = json.loads(out)
    assert status["phase"] == "Succeeded" and status["progress"]["percent"] == 100.0
    assert "domainmigration.domig.dev/web-to-host-b-" in err
    assert where(world) == {"host-b": "running"}
    code, out, _ = await plugin(kube, "list")
    assert code == 0 and "web-to-host-b-" in out and "Succeeded" in out and "100.00%" in out
    await until(lambda: (kube.read("hypervisorhosts", "host-a") or {}).get("status", {}).get("conditions"))
    code, out, _ = await plugin(kube, "hosts")
    assert code == 0 and "host-a" in out and "True" in out


async def test_abort_through_the_plugin(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 8192}], linkMiBps=500))
    kube.apply(host("host-b", world, linkMiBps=500))
    code, out, err = await plugin(kube, "migrate", "web", "--from", "host-a", "--to", "host-b", "--name", "slow")
    assert code == 0 and out.strip() == "slow", err
    await until(lambda: (kube.read("domainmigrations", "slow", NS) or {}).get("status", {}).get("phase") == "Migrating")
    code, out, err = await plugin(kube, "-o", "json", "--interval", "0.2", "abort", "slow", "--wait")
    assert code == 3, err
    assert json.loads(out)["phase"] == "Aborted"
    assert where(world) == {"host-a": "running"}


async def test_bad_input_is_refused_naming_the_field(kube: ApiServer) -> None:
    code, _, err = await plugin(kube, "migrate", "web", "--from", "a", "--to", "b", "--flag", "warp")
    assert code == 2 and "spec.flags[0]: warp is not one of: live" in err and "Traceback" not in err
    code, _, err = await plugin(kube, "watch", "nothing-here")
    assert code == 2 and "404" in err


LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


async def test_a_domain_named_like_libvirt_allows_migrates(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "Web_DB.1", "memoryMiB": 1024}]))
    kube.apply(host("host-b", world))
    code, out, err = await plugin(
        kube, "-o", "json", "--interval", "0.2", "migrate", "Web_DB.1", "--from", "host-a", "--to", "host-b", "--wait"
    )
    assert code == 0, err
    assert json.loads(out)["phase"] == "Succeeded"
    assert where(world, "Web_DB.1") == {"host-a": "shutoff", "host-b": "running"}
    [created] = kube.list_objects("domainmigrations", NS)
    assert created["metadata"]["name"].startswith("web-db-1-to-host-b-")
    assert created["spec"]["domain"] == "Web_DB.1"


@pytest.mark.parametrize(
    ("domain", "prefix"),
    [
        ("web_1", "web-1-to-host-b-"),
        ("W" * 255, "w" * 48 + "-"),  # the longest spec.domain: cut, with a hash
        ("___", "domain-to-host-b-"),  # nothing valid left: a stand-in and a hash
        ("Ünï.cödé", "uni-code-to-host-b-"),
        ("日本語", "domain-to-host-b-"),
    ],
)
async def test_any_domain_name_gives_a_valid_object_name(kube: ApiServer, domain: str, prefix: str) -> None:
    code, out, err = await plugin(kube, "migrate", domain, "--from", "host-a", "--to", "host-b")
    assert code == 0, err
    name = out.strip()
    assert name.startswith(prefix) and LABEL.fullmatch(name) and len(name) <= 63, name
    created = kube.read("domainmigrations", name, NS)
    assert created is not None and created["spec"]["domain"] == domain


async def test_an_invalid_name_or_too_long_a_domain_is_refused_naming_the_field(kube: ApiServer) -> None:
    code, _, err = await plugin(kube, "migrate", "Web_DB.1", "--from", "a", "--to", "b", "--name", "Web_DB.1")
    assert code == 2 and "metadata.name (--name): 'Web_DB.1' is not a lowercase RFC 1123 subdomain" in err, err
    assert "Traceback" not in err
    code, _, err = await plugin(kube, "migrate", "w" * 300, "--from", "a", "--to", "b")
    assert code == 2 and "spec.domain: string should have at most 255 characters" in err and "metadata" not in err
    assert kube.list_objects("domainmigrations", NS) == []


async def test_migrate_dry_run_wait(kube: ApiServer, world: str, operator: KopfOperator) -> None:
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 2048}]))
    kube.apply(host("host-b", world))
    code, out, err = await plugin(
        kube, "-o", "json", "--interval", "0.2", "migrate", "web", "--from", "host-a", "--to", "host-b",
        "--dry-run", "--wait",
    )  # fmt: skip
    assert code == 0, err
    status = json.loads(out)
    assert (status["phase"], status["reason"]) == ("Succeeded", "DryRun"), status["message"]
    assert where(world) == {"host-a": "running"}


async def test_migrate_without_a_destination_and_evacuate_through_the_plugin(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, [{"name": "web"}, {"name": "db", "memoryMiB": 512}]))
    kube.apply(host("host-b", world, memoryMiB=512))
    kube.apply(host("host-c", world, memoryMiB=4096))
    code, out, err = await plugin(
        kube, "-o", "json", "--interval", "0.2", "migrate", "web", "--from", "host-a", "--wait"
    )
    assert code == 0, err
    status = json.loads(out)
    assert status["destination"] == "host-c" and status["placement"]["destination"] == "host-c"
    assert "domainmigration.domig.dev/web-to-anywhere-" in err
    code, out, err = await plugin(kube, "--interval", "0.2", "evacuate", "host-a", "--wait")
    assert code == 0, err
    assert "hypervisorhost.domig.dev/host-a evacuation requested" in err
    assert "Completed: the host runs no domain: 1 of 1 moved" in err
    assert "db" in out and "Succeeded" in out
    assert where(world, "db") == {"host-c": "running"}  # b fits it too; c has the most memory left
