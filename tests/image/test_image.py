"""The operator image, built from the Dockerfile by scripts/build-image.sh and run as it would be deployed:
read-only root filesystem, uid 10001, no network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
PODMAN = str(ROOT / "scripts" / "image" / "podman")
TAG = "localhost/domig:test"
STANDIN = "localhost/python:3.11-slim-bookworm"  # build-image.sh's stand-in for the FROM image
# What the Dockerfile's own layers add, over the base; measured at 186 MB (the venv 133, libvirt0 54).
BUDGET_MB = 220
# Where build-image.sh mounts this machine's trust into a build: never part of a layer of ours.
MOUNTED = ("etc/pip.conf", "etc/ssl/certs")


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "scripts/build-image.sh needs root (apt, debootstrap, podman's storage)"
    if shutil.which("podman") is None:
        return "podman is not installed (`make image` installs it, with apt)"
    info = subprocess.run([PODMAN, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip().splitlines()[-1:]}"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("DOMIG_IMAGE_REQUIRED") == "1":  # `make test`: built just before, so it must run
            pytest.fail(reason)
        pytest.skip(reason)
    # Always through the script, so the image is this tree's; when nothing changed it is all cached.
    subprocess.run(["bash", str(ROOT / "scripts" / "build-image.sh"), TAG], check=True, timeout=1200)
    return TAG


def run(image: str, *args: str, entrypoint: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [PODMAN, "run", "--rm", "--read-only", "--user", "10001:10001", "--network", "none"]
    if entrypoint is not None:
        command += ["--entrypoint", entrypoint]
    return subprocess.run([*command, image, *args], capture_output=True, text=True, timeout=120)


def inspect(image: str, template: str) -> str:
    return subprocess.run(
        [PODMAN, "image", "inspect", "--format", template, image], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_domig_help(image: str) -> None:
    done = run(image, "--help")
    assert done.returncode == 0, done.stderr
    for command in ("migrate", "validate", "demo", "operator"):
        assert command in done.stdout


def test_domig_operator_help(image: str) -> None:
    done = run(image, "operator", "--help")
    assert done.returncode == 0, done.stderr
    assert "--metrics-port" in done.stdout and "--standalone" in done.stdout


def test_kubectl_domig_help(image: str) -> None:
    done = run(image, "--help", entrypoint="kubectl-domig")
    assert done.returncode == 0, done.stderr
    assert "migrate" in done.stdout and "hosts" in done.stdout


def test_libvirt_client_and_the_kubernetes_client_load(image: str) -> None:
    code = (
        "import libvirt\n"
        "connection = libvirt.open('test:///default')\n"  # libvirt's own test driver, in the client library
        "print([d.name() for d in connection.listAllDomains()])\n"
        "import controller.backends.libvirt.driver, controller.operator.kube, controller.cli.plugin\n"
    )
    done = run(image, "-c", code, entrypoint="python")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['test']\n"


def test_runs_as_uid_10001_by_default(image: str) -> None:
    assert inspect(image, "{{.Config.User}}") == "10001:10001"
    done = subprocess.run(
        [PODMAN, "run", "--rm", "--read-only", "--network", "none", "--entrypoint", "id", image, "-u"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.stdout.strip() == "10001", done.stderr


def test_the_xend_simulator_is_not_in_it(image: str) -> None:
    found = run(image, "/", "-xdev", "-name", "*xendsim*", entrypoint="find")
    assert found.stdout == ""
    imported = run(image, "-c", "import xendsim", entrypoint="python")
    assert imported.returncode == 1 and "ModuleNotFoundError: No module named 'xendsim'" in imported.stderr
    demo = run(image, "xend-demo")
    assert demo.returncode == 2
    assert demo.stderr.splitlines() == [
        "domig xend-demo: the xend simulator is not installed; "
        "from a domig checkout run `pip install ./xendsim` (or `make setup`)"
    ]


def own_layers(image: str, tmp: Path) -> Iterator[tuple[str, tarfile.TarFile]]:
    """The layers the Dockerfile added over the stand-in base, oldest first, as tar files."""
    archive = tmp / "image.tar"
    subprocess.run([PODMAN, "save", "--quiet", "--format", "docker-archive", "-o", str(archive), image], check=True)
    base = len(json.loads(inspect(STANDIN, "{{json .RootFS.Layers}}")))
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        for name in manifest[0]["Layers"][base:]:
            with tarfile.open(fileobj=outer.extractfile(name)) as layer:
                yield name, layer


def test_no_layer_keeps_what_a_later_one_deletes(image: str, tmp_path: Path) -> None:
    added: dict[PurePosixPath, str] = {}  # path -> the layer of ours that added it
    deleted_later: list[str] = []
    for name, layer in own_layers(image, tmp_path):
        for member in layer.getmembers():
            path = PurePosixPath(member.name.removeprefix("./"))
            assert not any(str(path).startswith(m) for m in MOUNTED), f"{path} in {name}: a build mount was kept"
            assert path.suffix != ".whl", f"{path} in {name}"
            if path.name == ".wh..wh..opq":  # the directory's earlier content is hidden
                hidden = path.parent
                deleted_later += [f"{p} ({added[p]})" for p in added if hidden in p.parents]
            elif path.name.startswith(".wh."):
                gone = path.parent / path.name.removeprefix(".wh.")
                deleted_later += [f"{p} ({added[p]})" for p in added if p == gone or gone in p.parents]
            else:
                added[path] = name
    assert deleted_later == []


def test_size(image: str) -> None:
    size, base = int(inspect(image, "{{.Size}}")), int(inspect(STANDIN, "{{.Size}}"))
    print(f"\n{image}: {size / 1e6:.0f} MB, {(size - base) / 1e6:.0f} MB over the {base / 1e6:.0f} MB base")
    assert (size - base) / 1e6 < BUDGET_MB
