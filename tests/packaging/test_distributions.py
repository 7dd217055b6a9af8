"""What each distribution carries: domig's wheel has no simulator, and no product module imports it."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Build outputs and caches a checkout may hold; everything else is copied, so a packaging rule that
# picked up the simulator would pick it up here too.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", ".state"
)
# The one product module allowed to load the simulator, and only when asked to run the demo.
DEMO = ROOT / "controller" / "cli" / "xend_demo.py"


def build_wheel(project: str, tmp_path: Path) -> list[str]:
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    out = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(out), str(source / project)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


@pytest.mark.slow
def test_the_domig_wheel_carries_no_simulator(tmp_path: Path) -> None:
    names = build_wheel(".", tmp_path)
    assert "controller/cli/main.py" in names and "controller/backends/xend/driver.py" in names
    assert "controller/backends/test/driver.py" in names  # the test driver is a real driver: it stays
    assert [n for n in names if "xendsim" in n] == []


@pytest.mark.slow
def test_the_simulator_wheel_carries_the_simulator_alone(tmp_path: Path) -> None:
    names = build_wheel("xendsim", tmp_path)
    packages = {n.split("/")[0] for n in names if not n.startswith("domig_xendsim-")}
    assert packages == {"xendsim"}
    assert "xendsim/__main__.py" in names and "xendsim/host.py" in names
    assert "xendsim/pyproject.toml" not in names


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_only_the_demo_command_imports_the_simulator() -> None:
    importers = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "controller").rglob("*.py")
        if any(name == "xendsim" or name.startswith("xendsim.") for name in imports(path))
    }
    assert importers == {DEMO.relative_to(ROOT).as_posix()}
