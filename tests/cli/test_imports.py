"""The command line's modules: no import cycle, no private names borrowed, and each command
loading only what it uses (a fresh interpreter's sys.modules after the command ran)."""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from controller.cli import main, plugin
from controller.cli.lazy import Lazy

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "controller" / "cli"
MODULES = sorted(f"controller.cli.{path.stem}" for path in CLI.glob("*.py") if path.stem != "__init__")


def cli_edges(path: Path) -> set[str]:
    """The controller.cli modules this file refers to: imports anywhere in it (a function's own
    imports dodge a cycle at run time, not in the design) and modules named in strings (Lazy)."""
    edges: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            edges.add(node.module)
            edges.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            edges.add(node.value)
    return edges & set(MODULES)


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for target in sorted(graph[module]):
            if found := visit(target, [*path, module]):
                return found
        done.add(module)
        return None

    return next((found for module in graph if (found := visit(module, []))), None)


def test_the_cycle_finder_finds_one() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_the_cli_modules() -> None:
    graph = {f"controller.cli.{path.stem}": cli_edges(path) for path in CLI.glob("*.py") if path.stem != "__init__"}
    assert graph["controller.cli.main"] >= {"controller.cli.standalone", "controller.cli.operator"}  # Lazy seen
    assert cycle(graph) is None, f"import cycle: {' -> '.join(cycle(graph) or [])}"


def test_no_module_imports_a_private_name_of_another() -> None:
    borrowed = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {alias.name} from {node.module}"
        for path in (ROOT / "controller").rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert borrowed == []


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_nothing_outside_the_command_line_imports_it() -> None:
    users = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "controller").rglob("*.py")
        if CLI not in path.parents and any(name.startswith("controller.cli") for name in imported(path))
    ]
    assert users == []


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def lazies(parser: argparse.ArgumentParser) -> dict[str, object]:
    [subparsers] = [action for action in parser._actions if action.dest == "command"]
    assert isinstance(subparsers.choices, dict)
    return {name: sub.get_default("func") for name, sub in subparsers.choices.items()}


@pytest.mark.parametrize("made", [main.parser, plugin.parser], ids=["domig", "kubectl domig"])
def test_every_command_names_a_function_that_exists(made: Callable[[], argparse.ArgumentParser]) -> None:
    commands = lazies(made())
    assert commands and all(isinstance(command, Lazy) for command in commands.values())
    for name, command in commands.items():
        assert isinstance(command, Lazy) and callable(command.resolve()), name


TINY = """
apiVersion: domig.dev/v1alpha1
kind: HypervisorHost
metadata: {name: host-a}
spec: {driver: test, uri: test:///default, test: {linkMiBps: 1000, domains: [{name: web, memoryMiB: 64}]}}
---
apiVersion: domig.dev/v1alpha1
kind: HypervisorHost
metadata: {name: host-b}
spec: {driver: test, uri: test:///default, test: {linkMiBps: 1000}}
"""

HEAVY = ("kopf", "kubernetes", "prometheus_client", "cryptography", "aiohttp", "libvirt", "controller.operator")


def loaded_after(
    entry: str, argv: list[str], env: dict[str, str] | None = None, heavy: tuple[str, ...] = HEAVY
) -> tuple[int, set[str]]:
    """Run `entry.main(argv)` in a fresh interpreter; its exit code and which of `heavy` it loaded."""
    code = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from {entry} import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                code = main({argv!r})
            except SystemExit as exc:
                code = exc.code
        heavy = {heavy!r}
        print(json.dumps([code, sorted(h for h in heavy if any(m == h or m.startswith(h + ".") for m in sys.modules))]))
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})}
    )
    assert done.returncode == 0, done.stderr
    exit_code, loaded = json.loads(done.stdout)
    return exit_code, set(loaded)


def test_kubectl_domig_help_loads_nothing_heavy() -> None:
    assert loaded_after("controller.cli.plugin", ["list", "--help"]) == (0, set())


def test_kubectl_domig_list_loads_the_client_but_not_kopf_nor_the_operator(tmp_path: Path) -> None:
    # No cluster: the command gets as far as reading the kubeconfig, with every import it makes.
    nowhere = {"KUBECONFIG": str(tmp_path / "absent"), "KUBERNETES_SERVICE_HOST": ""}
    code, loaded = loaded_after("controller.cli.plugin", ["list"], nowhere)
    assert code == 1 and loaded == {"kubernetes"}


def test_domig_validate_loads_neither_kopf_nor_kubernetes() -> None:
    argv = ["validate", "-f", str(ROOT / "examples" / "migration-live.yaml")]
    assert loaded_after("controller.cli.main", argv) == (0, set())


def test_domig_migrate_on_the_test_driver_loads_no_cluster_code(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(TINY)
    argv = ["migrate", "-f", str(ROOT / "examples" / "migration-live.yaml"), "--hosts", str(hosts), "-o", "json"]
    assert loaded_after("controller.cli.main", argv) == (0, set())


def test_domig_migrate_to_a_named_host_loads_no_placement_nor_policy_and_for_json_no_rich(tmp_path: Path) -> None:
    """Start-up is most of what `domig migrate` adds to libvirt's own time: load only what runs."""
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(TINY)
    argv = ["migrate", "-f", str(ROOT / "examples" / "migration-live.yaml"), "--hosts", str(hosts), "-o", "json"]
    unneeded = ("controller.engine.admission", "controller.engine.placement", "controller.cli.destinations")
    # No policy given: its model is not built. Nothing said on stderr: no rich at all. An in-memory
    # test world: no file lock.
    unneeded += ("controller.api.migration_policy", "rich", "filelock")
    assert loaded_after("controller.cli.main", argv, heavy=unneeded) == (0, set())
    # The progress bar, when there is one to show, is still there.
    code, loaded = loaded_after("controller.cli.main", argv[:-2], heavy=unneeded)
    assert code == 0 and loaded == {"rich"}
    code, loaded = loaded_after("controller.cli.main", argv[:-2], heavy=("rich.progress",))
    assert code == 0 and loaded == {"rich.progress"}


def test_domig_migrate_with_policies_still_loads_them(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text(TINY)
    argv = ["migrate", "-f", str(ROOT / "examples" / "migration-live.yaml"), "--hosts", str(hosts), "-o", "json"]
    argv += ["--policies", str(ROOT / "examples" / "policies.yaml")]
    assert loaded_after("controller.cli.main", argv, heavy=("controller.api.migration_policy",)) == (
        0,
        {"controller.api.migration_policy"},
    )
