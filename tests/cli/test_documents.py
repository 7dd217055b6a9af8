"""Hosts files: HypervisorHost documents, and the Secrets their credentials come from."""

from pathlib import Path
from typing import Any

import pytest

from controller.api.errors import SpecError
from controller.cli.documents import load_hosts

SOURCE = Path("hosts.yaml")


def xend(name: str, uri: str = "xend+http://127.0.0.1:8000", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": name},
            "spec": {"driver": "xend", "uri": uri, **spec}}  # fmt: skip


SECRET = {
    "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "xen", "namespace": "ops"},
    "data": {"username": "cm9vdA=="}, "stringData": {"password": "hunter2"},
}  # fmt: skip


def test_credentials_come_from_a_secret_in_the_same_file() -> None:
    hosts = load_hosts([SECRET, xend("a", credentialsSecretRef={"name": "xen", "namespace": "ops"})], SOURCE)
    config = hosts.find("a")
    assert config is not None and config.credentials is not None
    assert (config.credentials.get("username"), config.credentials.get("password")) == ("root", "hunter2")
    assert "hunter2" not in repr(config)


def test_a_missing_secret_is_named() -> None:
    with pytest.raises(SpecError) as info:
        load_hosts([xend("a", credentialsSecretRef={"name": "nope"})], SOURCE)
    assert info.value.problems == [
        "hosts.yaml (document 1): spec.credentialsSecretRef: no Secret default/nope in this file"
    ]


def test_a_password_in_the_uri_is_refused() -> None:
    with pytest.raises(SpecError) as info:
        load_hosts([xend("a", uri="xend+http://root:hunter2@127.0.0.1:8000")], SOURCE)
    [problem] = info.value.problems
    assert problem.startswith("hosts.yaml (document 1): spec.uri: must not carry a password")
    assert "hunter2" not in problem
