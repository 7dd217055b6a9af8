"""The Grafana dashboard asks only for metrics the operator exports, through a data source variable."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import controller.operator.metrics  # noqa: F401  (registers the operator's metrics)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "manifests" / "grafana" / "domig-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

# PromQL words that look like metric names: binary operators, modifiers, and the label-list keywords.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS |= {"inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana variables allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings first: they may hold {}[]
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\boffset\s+-?[\w]+", " ", text)
    text = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:[eE][+-]?\d+)?", " ", text)  # numbers, 1e3 included
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in KEYWORDS:
            names.add(match.group())
    return names


def exported() -> dict[str, str]:
    """Every series name the registry exports -> the metric it belongs to."""
    series: dict[str, str] = {}
    for family in REGISTRY.collect():
        suffixes = {
            "counter": ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["", "_sum", "_count"],
        }.get(family.type, [""])
        for suffix in suffixes:
            series[family.name + suffix] = family.name
    return series


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())  # type: ignore[no-any-return]


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)  # a collapsed row holds its panels


def queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
            found = re.fullmatch(r"label_values\((?:(.+),)?\s*\w+\s*\)", query)
            assert found, f"variable {variable['name']}: {query}"
            if found.group(1):
                yield f"variable {variable['name']!r}", found.group(1)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, driver) (rate(a_bucket{phase="x}[1m]", le!=""}[$window]))', {"a_bucket"}),
        ("histogram_quantile(0.99, sum(rate(b_bucket[5m])) by (le)) > 1e3", {"b_bucket"}),
        ("x / on(name) group_left y or vector(0)", {"x", "y"}),
        ("count(max by (host) (h) == 0) unless z offset 5m", {"h", "z"}),
        ('sum without (instance) (c_total{job=~"$job"}[${__range}])', {"c_total"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_every_query_names_a_metric_the_operator_exports() -> None:
    series = exported()
    used: set[str] = set()
    found = list(queries())
    assert len(found) >= 10
    for where, expr in found:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names:
            # A histogram's series is name_bucket/_sum/_count, a counter's name_total: only those exist.
            assert name in series, f"{where}: {name} is not exported (in {expr!r})"
            used.add(series[name])
    ours = {family for family in series.values() if family.startswith("domig_")}
    assert ours - used == set(), "exported but on no panel"


def test_the_registry_holds_the_documented_metrics() -> None:
    series = exported()
    for name in (
        "domig_migrations_active",
        "domig_migrations_waiting",
        "domig_migrations_finished_total",
        "domig_migration_duration_seconds_bucket",
        "domig_migration_downtime_seconds_count",
        "domig_host_ready",
    ):
        assert name in series
    readme = (ROOT / "README.md").read_text()
    for family in {f for f in series.values() if f.startswith("domig_")}:
        assert family in readme, f"{family} is not documented in README.md"


def test_panels_read_the_data_source_variable() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]
