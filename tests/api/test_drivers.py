"""The driver table as the model sees it: declarations that stay light, and docs made from them."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from controller.api.docs import driver_table, rewritten
from controller.api.drivers import DRIVERS, DriverDeclaration, HostOption, declarations, load
from controller.api.params import ParamType

ROOT = Path(__file__).resolve().parents[2]
LIGHT = ("controller.api", "pydantic")


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("name", list(DRIVERS))
def test_a_declaration_imports_only_the_model_and_pydantic(name: str) -> None:
    package = DRIVERS[name].rpartition(".")[0]
    todo, seen = [DRIVERS[name]], set()
    while todo:
        module = todo.pop()
        seen.add(module)
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.origin is not None
        for imported in _imports(Path(spec.origin)):
            if imported.startswith(package + "."):
                if imported not in seen:
                    todo.append(imported)  # its own light modules, like the test driver's options
            elif imported.split(".")[0] in sys.stdlib_module_names or imported == "__future__":
                continue
            else:
                assert imported.startswith(LIGHT), f"{module} imports {imported}"


def test_building_the_crds_and_parsing_hosts_imports_no_driver() -> None:
    script = """
import sys
from controller.api.crds import all_crds
from controller.api.hypervisor_host import HypervisorHost
all_crds()
for spec in ({"driver": "libvirt", "uri": "qemu+tcp://a/system", "peerToPeer": True},
             {"driver": "xend", "uri": "xend+http://a:8000"},
             {"driver": "test", "uri": "test:///default", "test": {}}):
    HypervisorHost.parse({"metadata": {"name": "a"}, "spec": spec}).spec.driver_options()
print(sorted(m for m in sys.modules if m == "libvirt" or m.endswith(".driver") or m == "aiohttp"))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_each_declaration_is_named_as_its_table_line() -> None:
    assert list(declarations()) == list(DRIVERS)
    assert all(d.name == name for name, d in declarations().items())
    assert set(declarations()["xend"].params) == {"xen.port", "xen.resource"}


def _declaration(name: str, **kw: object) -> DriverDeclaration:
    return DriverDeclaration(name, f"x:{name}", "x", ("x",), "x://a", **kw)  # type: ignore[arg-type]


def test_two_drivers_cannot_claim_one_field_or_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    a = _declaration("a", host_options=(HostOption("block", int, 0, 1),), params={"a.x": ParamType(int)})
    b = _declaration("b", host_options=(HostOption("block", int, 0, 1),))
    c = _declaration("c", params={"bandwidth": ParamType(int)})
    for name, declaration in {"mod_a": a, "mod_b": b, "mod_c": c}.items():
        module = types.ModuleType(name)
        module.DECLARATION = declaration  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, name, module)
    assert list(load({"a": "mod_a"})) == ["a"]
    with pytest.raises(ValueError, match="host field block is declared by a and b"):
        load({"a": "mod_a", "b": "mod_b"})
    with pytest.raises(ValueError, match="parameter bandwidth is declared by the shared parameters and c"):
        load({"c": "mod_c"})
    with pytest.raises(ValueError, match="the table names mod_a 'z', but it declares 'a'"):
        load({"z": "mod_a"})


def test_the_readme_table_of_drivers_is_generated() -> None:
    readme = (ROOT / "README.md").read_text()
    assert rewritten(readme, driver_table(DRIVERS, declarations())) == readme, (
        "run: python -m controller.api.docs README.md"
    )
