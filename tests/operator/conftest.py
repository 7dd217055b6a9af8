"""The operator, run for real by kopf, against the emulated API server with our CRDs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.backends.test.driver import TestDriver
from tests.kube.emulator import ApiServer, KopfOperator

ROOT = Path(__file__).resolve().parents[2]
CRDS = sorted((ROOT / "crds").glob("*.yaml"))  # crds/Kustomization has no extension: kubectl -f skips it
HANDLERS = ROOT / "controller" / "operator" / "handlers.py"
NS = "default"

FAST = {"DOMIG_POLL_INTERVAL": "0.2", "DOMIG_PROBE_INTERVAL": "1", "DOMIG_HOST_RETRY": "0.5"}


@pytest.fixture
def kube() -> Iterator[ApiServer]:
    with ApiServer(crds=CRDS) as api:
        yield api
        assert not api.server_errors, api.server_errors


@pytest.fixture
def world(tmp_path: Path) -> str:
    return f"test://{tmp_path / 'world.json'}"


@pytest.fixture
def operator_env(kube: ApiServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"KUBECONFIG": str(kube.kubeconfig), **FAST}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
async def operator(kube: ApiServer, operator_env: dict[str, str]) -> AsyncIterator[KopfOperator]:
    async with KopfOperator(kube, HANDLERS) as op:
        yield op


def host(name: str, uri: str, domains: list[dict[str, Any]] | None = None, **spec: Any) -> dict[str, Any]:
    test = {"linkMiBps": spec.pop("linkMiBps", 1000), "domains": domains or []}
    for key in ("faults", "memoryMiB", "cpus", "cpuModel"):  # the test driver's, under spec.test
        if key in spec:
            test[key] = spec.pop(key)
    return {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "HypervisorHost",
        "metadata": {"name": name},
        "spec": {"driver": "test", "uri": uri, "test": test, **spec},
    }


def migration(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"domain": "web", "source": "host-a", "destination": "host-b", "flags": ["live"]}
    base.update(spec)
    return {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "DomainMigration",
        "metadata": {"name": name, "namespace": NS},
        "spec": base,
    }


def world_state(uri: str) -> dict[str, Any]:
    return TestDriver().world(uri).read()


def where(uri: str, domain: str = "web") -> dict[str, str]:
    state = world_state(uri)
    return {h: d["domains"][domain]["state"] for h, d in state["hosts"].items() if domain in d["domains"]}


async def wait_phase(kube: ApiServer, name: str, phases: set[str], within: float = 30) -> dict[str, Any]:
    def reached(obj: dict[str, Any]) -> bool:
        return obj.get("status", {}).get("phase") in phases

    await kube.wait_for("domainmigrations", name, NS, reached, within=within)
    found = kube.read("domainmigrations", name, NS)
    assert found is not None
    return found


async def until(check: Callable[[], Any], within: float = 20) -> Any:
    async with asyncio.timeout(within):
        while not (result := check()):
            await asyncio.sleep(0.05)
    return result


def events_for(kube: ApiServer, name: str) -> list[dict[str, Any]]:
    return [e for e in kube.list_objects("events", NS) if e.get("involvedObject", {}).get("name") == name]


__all__ = ["os"]
