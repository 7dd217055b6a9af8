"""A backend is one folder and one line: a throwaway driver, written here into a folder of its own
and added as one line to a copy of the table, reaches the host model, the CRD (checked by the
emulated API server) and the capability checks without anything else knowing its name."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from controller.api import Phase, Reason, load_migration
from controller.api.crds import hypervisor_host_crd
from controller.api.drivers import DRIVERS, DriverDeclaration, load
from controller.api.errors import SpecError
from controller.api.expressions import check
from controller.api.hypervisor_host import HostSpecBase, HypervisorHost, HypervisorHostSpec, host_spec_model
from controller.api.resource import ObjectMeta
from controller.api.rules import migration_rules
from controller.backends.protocol import HostConfig
from controller.backends.registry import DriverTable
from controller.engine import Engine, RunPolicy, StaticHosts, host_config
from controller.engine.checks import unsupported_by_either
from tests.kube.emulator import ApiError, ApiServer

DECLARATION = """
    from pydantic import Field, StrictInt

    from controller.api.base import Model
    from controller.api.drivers import DriverDeclaration, HostOption
    from controller.api.params import ParamType


    class FakeHost(Model):
        speed_mibps: StrictInt = Field(default=1, ge=1, alias="speedMiBps")


    DECLARATION = DriverDeclaration(
        name="fake",
        driver="fakedriver.driver:FakeDriver",
        summary="a throwaway",
        uri_schemes=("fake",),
        uri_example="fake://host-a",
        host_options=(HostOption("fake", FakeHost | None, None, example={}, spread=True),),
        params={"fake.turbo": ParamType(int, 0, 9)},
    )
"""
DRIVER = """
    from controller.api.enums import MigrationFlag, Reason
    from controller.backends.protocol import BackendError, Capabilities, Connection, Driver, HostConfig


    class FakeDriver(Driver):
        name = "fake"
        capabilities = Capabilities(flags=frozenset({MigrationFlag.live}), params=frozenset({"fake.turbo"}))

        async def connect(self, host: HostConfig) -> Connection:
            raise BackendError(f"a fake reaches nowhere ({host.options})", Reason.HostUnreachable)
"""


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, DriverDeclaration]]:
    root = tmp_path_factory.mktemp("drivers")
    folder = root / "fakedriver"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "declaration.py").write_text(textwrap.dedent(DECLARATION))
    (folder / "driver.py").write_text(textwrap.dedent(DRIVER))
    sys.path.insert(0, str(root))
    try:
        yield load({**DRIVERS, "fake": "fakedriver.declaration"})  # the one line
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m.split(".")[0] == "fakedriver"]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def spec_model(table: dict[str, DriverDeclaration]) -> type[HostSpecBase]:
    return host_spec_model(table)


def test_the_host_model_takes_the_new_driver_and_its_block(spec_model: type[HostSpecBase]) -> None:
    host = spec_model.parse({"driver": "fake", "uri": "fake://host-a", "fake": {"speedMiBps": 5}})
    assert host.driver_options() == {"speedMiBps": 5}
    with pytest.raises(SpecError) as refused:
        spec_model.parse({"driver": "test", "uri": "test:///default", "fake": {}})
    assert refused.value.problems == ["fake: is only for the fake driver, got 'test'"]
    with pytest.raises(SpecError, match=r"fake\.speedMiBps"):
        spec_model.parse({"driver": "fake", "uri": "fake://host-a", "fake": {"speedMiBps": 0}})
    # The others' fields are still theirs.
    with pytest.raises(SpecError, match="peerToPeer: is only for the libvirt driver, got 'fake'"):
        spec_model.parse({"driver": "fake", "uri": "fake://host-a", "peerToPeer": True})
    # Without its line, the real table does not know it.
    with pytest.raises(SpecError, match="driver"):
        HypervisorHostSpec.parse({"driver": "fake", "uri": "fake://host-a"})


def test_its_parameters_are_checked_by_the_rulebook(table: dict[str, DriverDeclaration]) -> None:
    rules = migration_rules(table)
    assert check({"params": {"fake.turbo": 10}}, rules) == [("params[fake.turbo]", "must be at most 9, got 10")]
    assert check({"params": {"fake.turbo": 3, "xen.port": 1}}, rules) == []


def _host(name: str, driver: str, uri: str, **extra: Any) -> dict[str, Any]:
    spec = {"driver": driver, "uri": uri, **extra}
    return {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name}, "spec": spec}


def test_the_crd_takes_it_and_the_api_server_refuses_its_block_elsewhere(spec_model: type[HostSpecBase]) -> None:
    crd = hypervisor_host_crd(spec_model)
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert schema["properties"]["driver"]["enum"] == ["test", "xend", "libvirt", "fake"]
    assert schema["properties"]["fake"]["properties"]["speedMiBps"]["minimum"] == 1
    with ApiServer(crds=[crd], peering=False) as api:
        api.create(_host("fake-a", "fake", "fake://host-a", fake={"speedMiBps": 5}))
        with pytest.raises(ApiError) as refused:
            api.create(_host("test-a", "test", "test:///default", fake={}))
    assert refused.value.status == 422
    causes = (refused.value.details or {}).get("causes", [])
    said = [(c.get("field"), c.get("message")) for c in causes]
    assert said == [("spec.fake", 'Invalid value: "object": is only for the fake driver')]


def test_the_registry_builds_it_and_its_capabilities_are_checked(
    table: dict[str, DriverDeclaration], spec_model: type[HostSpecBase]
) -> None:
    drivers = DriverTable(table=table)
    fake = drivers.get("fake")
    assert type(fake).__module__ == "fakedriver.driver"
    test = DriverTable().get("test")
    spec = load_migration({"metadata": {"name": "m"}, "spec": {"domain": "web", "source": "a", "destination": "b",
                           "flags": ["live", "postCopy"]}}).spec  # fmt: skip
    # Either end's driver can refuse: here only the destination's.
    sides = [("source", "test", test.capabilities), ("destination", "fake", fake.capabilities)]
    assert unsupported_by_either(spec, sides) == [
        ("destination", "flags[1]", "the fake driver does not support flag postCopy"),
        ("destination", "flags[1]", "the fake driver cannot switch to post-copy"),
    ]


async def test_the_engine_drives_it_through_the_table(
    table: dict[str, DriverDeclaration], spec_model: type[HostSpecBase]
) -> None:
    def config(name: str) -> HostConfig:
        spec = spec_model.parse({"driver": "fake", "uri": f"fake://{name}", "fake": {"speedMiBps": 2}})
        return host_config(HypervisorHost.model_construct(metadata=ObjectMeta(name=name), spec=spec))

    engine = Engine(DriverTable(table=table), StaticHosts([config("a"), config("b")]), RunPolicy())

    def migration(**spec: Any) -> Any:
        return load_migration({"metadata": {"name": "m"}, "spec": {"domain": "web", "source": "a",
                               "destination": "b", **spec}})  # fmt: skip

    refused = await engine.run(migration(flags=["live", "paused"]))
    assert (refused.phase, refused.reason) == (Phase.Failed, Reason.NoSupport)
    assert refused.message == "the fake driver does not support flag paused"
    # What it supports passes validation and reaches its connect, with its host block as options.
    reached = await engine.run(migration(flags=["live"], params={"fake.turbo": 3}))
    assert (reached.phase, reached.reason) == (Phase.Failed, Reason.HostUnreachable)
    assert reached.message == "cannot connect to host a: a fake reaches nowhere ({'speedMiBps': 2}); nothing moved"
