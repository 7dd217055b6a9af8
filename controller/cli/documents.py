"""Reading the YAML a user hands to `domig`: migrations and HypervisorHost documents."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from controller.api.errors import SpecError
from controller.api.hypervisor_host import HostLimits, HypervisorHost
from controller.api.resource import DomainMigration
from controller.backends.protocol import Credentials, HostConfig
from controller.engine.host_directory import StaticHosts, host_config

if TYPE_CHECKING:
    from controller.api.migration_policy import MigrationPolicy


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
    if len(docs) == 1:
        migrations = docs  # one document, whatever it is: the model names what is wrong with it (kind: ...)
    if len(migrations) != 1:
        raise SpecError([f"{path}: expected one DomainMigration document, found {len(migrations)}"])
    try:
        return DomainMigration.parse(migrations[0])
    except SpecError as exc:
        raise _prefixed(path, exc) from None


def _secret(doc: dict[str, Any]) -> dict[str, str]:
    """A v1 Secret's data, decoded (data is base64, stringData is plain), as the API server merges them."""
    decoded = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
    return {**decoded, **{k: str(v) for k, v in (doc.get("stringData") or {}).items()}}


class HostsFile(StaticHosts):
    """A hosts file as the engine looks hosts up, and the HypervisorHost documents themselves:
    placement reads their labels, maintenance, evacuate and limits."""

    def __init__(self, configs: list[HostConfig], documents: list[HypervisorHost], path: Path) -> None:
        super().__init__(configs)
        self.documents = {host.name: host for host in documents}
        self.path = path

    def limits(self, name: str) -> HostLimits:
        host = self.documents.get(name)
        return host.spec.limits if host is not None else HostLimits()


def load_hosts(data: list[Any], source: Path) -> HostsFile:
    """HypervisorHost documents, and the Secrets their credentialsSecretRef names (standalone runs
    have no cluster to hold Secrets, so they come in the same file, never in the host's spec)."""
    secrets: dict[tuple[str, str], dict[str, str]] = {}
    hosts: list[tuple[int, HypervisorHost]] = []
    problems: list[str] = []
    for index, doc in enumerate(data):
        kind = doc.get("kind") if isinstance(doc, dict) else None
        if kind == "Secret":
            meta = doc.get("metadata") or {}
            try:
                secrets[(meta.get("namespace") or "default", str(meta["name"]))] = _secret(doc)
            except (KeyError, ValueError, binascii.Error) as exc:
                problems.append(f"{source} (document {index + 1}): Secret: not a valid Secret ({exc})")
            continue
        if kind != "HypervisorHost":
            problems.append(f"{source} (document {index + 1}): kind: must be HypervisorHost or Secret")
            continue
        try:
            hosts.append((index, HypervisorHost.parse(doc)))
        except SpecError as exc:
            problems.extend(_prefixed(source, exc, index).problems)
    configs: list[HostConfig] = []
    for index, host in hosts:
        ref = host.spec.credentials_secret_ref
        credentials = None
        if ref is not None:
            key = (ref.namespace or "default", ref.name)
            if key not in secrets:
                problems.append(
                    f"{source} (document {index + 1}): spec.credentialsSecretRef: no Secret {key[0]}/{key[1]} "
                    "in this file"
                )
                continue
            credentials = Credentials(secrets[key])
        configs.append(host_config(host, credentials))
    if problems:
        raise SpecError(problems)
    return HostsFile(configs, [host for _, host in hosts], source)


def load_hosts_file(path: Path) -> HostsFile:
    return load_hosts(_documents(path), path)


def load_policies_file(path: Path) -> list[MigrationPolicy]:
    # Here, not at the top: only `--policies` reads them, and their model is built when imported.
    from controller.api.migration_policy import MigrationPolicy

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
