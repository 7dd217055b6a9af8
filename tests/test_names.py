"""Names that explain themselves: one word per side, no wire name bent out of a Python name,
and no two modules of the product with the same name in different layers."""

import ast
from collections import Counter
from pathlib import Path

import pytest
from pydantic.alias_generators import to_camel

from controller.api.base import Model
from controller.api.hypervisor_host import HypervisorHost
from controller.api.migration_policy import MigrationPolicySpec
from controller.api.resource import DomainMigration
from controller.backends.test.options import TestHostSpec

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ROOT / "controller"
DRIVERS = PRODUCT / "backends"
# The spec says source and destination; these other words for the same two ends are not used.
OTHER_WORDS_FOR_A_SIDE = {"src", "dst", "dest", "here", "there"}


def _identifiers(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.arg):
            found.append((node.lineno, node.arg))
        elif isinstance(node, ast.Attribute):
            found.append((node.lineno, node.attr))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((node.lineno, node.name))
    return found


def _sources() -> list[Path]:
    return sorted(PRODUCT.rglob("*.py"))


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_side_is_called_source_or_destination(path: Path) -> None:
    tree = ast.parse(path.read_text())
    bad = [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for line, name in _identifiers(tree)
        if OTHER_WORDS_FOR_A_SIDE & set(name.lower().split("_"))
    ]
    assert not bad, "\n".join(bad)


def _models() -> list[type[Model]]:
    seen: list[type[Model]] = []
    todo: list[type[Model]] = list(Model.__subclasses__())
    while todo:
        model = todo.pop()
        if model not in seen:
            seen.append(model)
            todo.extend(model.__subclasses__())
    return seen


def test_every_model_of_the_product_is_seen() -> None:
    assert {DomainMigration, HypervisorHost, MigrationPolicySpec, TestHostSpec} <= set(_models())


def test_a_wire_name_with_a_unit_is_written_out_not_bent_out_of_a_python_name() -> None:
    """`completion_per_gi_b` to get `completionPerGiB` is a name nobody would type: a field whose
    generated name would need a one-letter word carries an explicit alias instead."""
    bent = []
    for model in _models():
        for name, info in model.model_fields.items():
            one_letter_word = any(len(word) == 1 for word in name.split("_"))
            if one_letter_word and (info.alias is None or info.alias == to_camel(name)):
                bent.append(f"{model.__name__}.{name}")
    assert not bent


def test_units_read_the_same_on_the_wire_everywhere() -> None:
    wire = {info.alias or to_camel(n) for m in _models() for n, info in m.model_fields.items()}
    assert {"completionPerGiB", "memoryMiB", "dirtyRateMiBps", "linkMiBps", "completionTimeoutPerGiB"} <= wire


def test_no_two_modules_of_the_product_share_a_name_across_layers() -> None:
    """A name says which layer and which thing; a backend's own folder may reuse the common names
    (driver.py, declaration.py) because the folder says which backend."""
    names = Counter(
        p.name
        for p in _sources()
        if p.name != "__init__.py" and not (p.parent.parent == DRIVERS and p.parent != DRIVERS)
    )
    assert [n for n, count in names.items() if count > 1] == []
