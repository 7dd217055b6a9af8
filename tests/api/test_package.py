"""controller.api's own names are there, and importing one submodule builds no model it does not import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import controller.api

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", controller.api.__all__)
def test_each_public_name_is_the_submodules_own(name: str) -> None:
    value = getattr(controller.api, name)
    assert value is not None and name in dir(controller.api)
    namespace: dict[str, object] = {}
    exec(f"from controller.api import {name}", namespace)
    assert namespace[name] is value


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        controller.api.Nothing  # noqa: B018


def test_importing_the_errors_module_builds_no_model() -> None:
    code = "import sys, controller.api.errors; print(sorted(m for m in sys.modules if m.startswith('controller.')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.split() == ["['controller.api',", "'controller.api.errors']"]
