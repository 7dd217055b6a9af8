"""`domig operator`'s start-up checks: a missing CRD, peering or permission is said, never waited on."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import kmock
import pytest

from controller.operator.kube import Kube
from controller.operator.startup import Scope, StartupError, check
from tests.kube.emulator import ApiServer
from tests.operator.conftest import CRDS, host, migration, until, wait_phase, where
from tests.operator.entrypoints import OperatorProcess, processes

PEERINGS = kmock.resource("kopf.dev", "v1", "clusterkopfpeerings")
__all__ = ["processes"]  # a fixture


def start(processes: list[OperatorProcess], kube: ApiServer, *args: str) -> OperatorProcess:
    process = OperatorProcess(kube, *args)
    processes.append(process)
    return process


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_without_our_crds_it_stops_and_names_what_to_apply(processes: list[OperatorProcess]) -> None:
    with ApiServer(crds=[]) as kube:
        process = start(processes, kube)
        assert process.exited() == 2, process.output
    line = one_line(process.output)
    assert line.startswith("domig operator: the CRDs domainmigrations.domig.dev, hypervisorhosts.domig.dev, ")
    assert "kubectl apply -f crds/" in line and "kubectl apply -k manifests/" in line


def test_one_missing_crd_is_named_alone(processes: list[OperatorProcess]) -> None:
    with ApiServer(crds=[p for p in CRDS if p.name != "migrationpolicy.yaml"]) as kube:
        process = start(processes, kube, "--standalone")
        assert process.exited() == 2, process.output
    line = one_line(process.output)
    assert "the CRD migrationpolicies.domig.dev (domig.dev/v1alpha1) is not installed" in line
    assert "domainmigrations" not in line


def test_without_the_peering_crd_it_says_so_and_suggests_standalone(processes: list[OperatorProcess]) -> None:
    with ApiServer(crds=CRDS, peering=False) as kube:
        process = start(processes, kube)
        assert process.exited() == 2, process.output
    line = one_line(process.output)
    assert "kopf's peering CRD clusterkopfpeerings.kopf.dev is not installed" in line
    assert "kubectl apply -f manifests/peering.yaml" in line and "--standalone for a single replica" in line


@pytest.mark.slow
async def test_a_missing_peering_object_is_created_and_the_operator_acts(
    kube: ApiServer, world: str, processes: list[OperatorProcess]
) -> None:
    assert kube.read("clusterkopfpeerings", "domig") is None
    kube.apply(host("host-a", world, [{"name": "web", "memoryMiB": 1024}]))
    kube.apply(host("host-b", world))
    process = start(processes, kube)  # the Deployment's way: --peering=domig, the default
    kube.apply(migration("m"))
    done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=60)
    assert done["status"]["phase"] == "Succeeded", process.output[-3000:]
    assert where(world) == {"host-a": "shutoff", "host-b": "running"}
    peering = kube.read("clusterkopfpeerings", "domig")
    assert peering is not None and peering.get("status"), peering  # kopf keeps its replicas' heartbeats there
    assert "created kopf's peering object ClusterKopfPeering 'domig'" in process.output
    assert process.stop() == 0, process.output[-3000:]


async def test_a_denied_permission_is_a_warning_naming_it(kube: ApiServer, processes: list[OperatorProcess]) -> None:
    kube.access.deny("patch", "domainmigrations", group="domig.dev", subresource="status")
    kube.access.deny("get", "secrets")
    process = start(processes, kube, "--standalone")
    await until(lambda: "Initial authentication has finished" in process.output, within=60)
    assert process.proc.poll() is None, process.output  # a warning, not a stop
    output = process.output
    assert (
        "not allowed to patch domainmigrations/status.domig.dev cluster-wide: no progress would be recorded; "
        "grant it in the operator's ClusterRole (manifests/rbac.yaml)" in output
    ), output
    assert "not allowed to get secrets cluster-wide: hosts with a credentialsSecretRef cannot log in" in output
    assert output.count("not allowed to") == 2, output
    assert process.stop() == 0


# In-process: the paths a real cluster takes now and then, made to happen here on purpose.


@pytest.fixture
def client(kube: ApiServer, monkeypatch: pytest.MonkeyPatch) -> Kube:
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig))
    return Kube.from_environment()


async def test_two_replicas_at_once_one_creates_the_other_finds_it(
    kube: ApiServer, client: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    # The other replica's create lands between this one's read (404) and its create (409).
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "domig"}})
    kube[kmock.action.FETCH, PEERINGS][:1] << 404
    with caplog.at_level(logging.INFO, logger="domig.startup"):
        await asyncio.to_thread(check, client.client, Scope())
    assert "kopf's peering object ClusterKopfPeering 'domig' is there (another replica made it)" in caplog.text
    assert len(kube.list_objects("clusterkopfpeerings")) == 1


@pytest.mark.parametrize("webhook", [True, False])
async def test_the_webhook_configuration_permission_is_asked_only_when_it_serves_the_webhook(
    kube: ApiServer, client: Kube, caplog: pytest.LogCaptureFixture, webhook: bool
) -> None:
    kube.access.deny("patch", "validatingwebhookconfigurations", group="admissionregistration.k8s.io")
    with caplog.at_level(logging.INFO, logger="domig.startup"):
        await asyncio.to_thread(check, client.client, Scope(webhook=webhook))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    named = [w for w in warnings if "patch validatingwebhookconfigurations.admissionregistration.k8s.io" in w]
    assert len(named) == (1 if webhook else 0), warnings
    assert all("admission webhook could not be registered" in w for w in named)


async def test_a_peering_object_it_may_not_create_stops_it_naming_the_rule(kube: ApiServer, client: Kube) -> None:
    kube[kmock.action.CREATE, PEERINGS] << 403
    with pytest.raises(StartupError) as info:
        await asyncio.to_thread(check, client.client, Scope())
    message = str(info.value)
    assert "kopf's peering object ClusterKopfPeering 'domig' is missing and the operator may not create it" in message
    assert "allow create on clusterkopfpeerings (apiGroups: [kopf.dev])" in message
    assert "--standalone" in message and "\n" not in message


async def test_with_namespaces_the_peering_is_made_in_each(kube: ApiServer, client: Kube) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "vms"}})
    await asyncio.to_thread(check, client.client, Scope(namespaces=("default", "vms"), peering="p"))
    assert kube.read("kopfpeerings", "p", "default") is not None
    assert kube.read("kopfpeerings", "p", "vms") is not None
    assert kube.read("clusterkopfpeerings", "p") is None


async def test_standalone_needs_no_peering_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    with ApiServer(crds=CRDS, peering=False) as bare:
        monkeypatch.setenv("KUBECONFIG", str(bare.kubeconfig))
        await asyncio.to_thread(check, Kube.from_environment().client, Scope(peering=None))
        with pytest.raises(StartupError, match=r"peering CRD clusterkopfpeerings\.kopf\.dev is not installed"):
            await asyncio.to_thread(check, Kube.from_environment().client, Scope())


async def test_an_api_server_without_access_reviews_is_one_warning(
    kube: ApiServer, client: Kube, caplog: pytest.LogCaptureFixture
) -> None:
    kube[kmock.action.CREATE, kmock.resource("authorization.k8s.io", "v1", "selfsubjectaccessreviews")] << 404
    with caplog.at_level(logging.INFO, logger="domig.startup"):
        await asyncio.to_thread(check, client.client, Scope(peering=None))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not check the operator's permissions" in warnings[0].getMessage()


async def test_an_unreachable_api_server_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with ApiServer() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with pytest.raises(StartupError) as info:
        await asyncio.to_thread(check, Kube.from_environment().client, Scope())
    assert str(info.value).startswith(f"cannot reach the API server at {gone.server_url}: ")
    assert "Connection refused" in str(info.value) and "\n" not in str(info.value)
