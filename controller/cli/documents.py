"""Reading the YAML a user hands to `domig`: migrations and HypervisorHost documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.api.errors import SpecError
from controller.api.hosts import HypervisorHost
from controller.api.policy import MigrationPolicy
from controller.api.resource import DomainMigration
from controller.engine.hosts import StaticHosts, host_config


def _documents(path: Path) -> list[Any]:
    try:
        text = path.read_text() if str(path) != "-" else __import__("sys").stdin.read()
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: not valid YAML: {exc}"]) from None


def _prefixed(path: Path, exc: SpecError, index: int | None = None) -> SpecError:
    where = f"{path}" + (f" (document {index + 1})" if index is not None else "")
    return SpecError([f"{where}: {problem}" for problem in exc.problems])


def load_migration_file(path: Path) -> DomainMigration:
    docs = _documents(path)
    migrations = [d for d in docs if isinstance(d, dict) and d.get("kind", "DomainMigration") == "DomainMigration"]
    if len(migrations) != 1:
        raise SpecError([f"{path}: expected one DomainMigration document, found {len(migrations)}"])
    try:
        return DomainMigration.parse(migrations[0])
    except SpecError as exc:
        raise _prefixed(path, exc) from None


def load_hosts(data: list[Any], source: Path) -> StaticHosts:
    hosts = []
    problems: list[str] = []
    for index, doc in enumerate(data):
        if not isinstance(doc, dict) or doc.get("kind") != "HypervisorHost":
            problems.append(f"{source} (document {index + 1}): kind: must be HypervisorHost")
            continue
        try:
            hosts.append(host_config(HypervisorHost.parse(doc)))
        except SpecError as exc:
            problems.extend(_prefixed(source, exc, index).problems)
    if problems:
        raise SpecError(problems)
    return StaticHosts(hosts)


def load_hosts_file(path: Path) -> StaticHosts:
    return load_hosts(_documents(path), path)


def load_policies_file(path: Path) -> list[MigrationPolicy]:
    policies = []
    problems: list[str] = []
    for index, doc in enumerate(_documents(path)):
        try:
            policies.append(MigrationPolicy.parse(doc))
        except SpecError as exc:
            problems.extend(_prefixed(path, exc, index).problems)
    if problems:
        raise SpecError(problems)
    return policies
