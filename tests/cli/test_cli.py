"""`domig` as a user runs it: a real process, real YAML, real exit codes and signals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def domig(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli.main", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def migrate_json(example: str) -> tuple[int, dict[str, object]]:
    done = domig("migrate", "-f", str(EXAMPLES / example), "--hosts", str(EXAMPLES / "hosts.yaml"), "-o", "json")
    return done.returncode, json.loads(done.stdout)


def test_live_example_succeeds_with_full_progress() -> None:
    code, status = migrate_json("migration-live.yaml")
    assert code == 0 and status["phase"] == "Succeeded"
    assert status["progress"]["percent"] == 100.0  # type: ignore[index]
    assert status["target"] == {  # type: ignore[comparison-overlap]
        "host": "host-b",
        "domain": "web",
        "uuid": status["source"]["uuid"],  # type: ignore[index]
        "hostname": "host-b",
        "state": "running",
    }
    assert status["source"]["state"] == "absent"  # type: ignore[index]


def test_rename_example_arrives_under_the_new_name() -> None:
    code, status = migrate_json("migration-rename.yaml")
    assert code == 0 and status["target"]["domain"] == "db-blue"  # type: ignore[index]


def test_non_converging_example_stalls_and_the_source_keeps_running() -> None:
    code, status = migrate_json("migration-nonconverging.yaml")
    assert code == 1 and status["phase"] == "Failed" and status["reason"] == "Stalled"
    assert status["source"]["state"] == "running"  # type: ignore[index]
    assert status["target"]["state"] == "absent"  # type: ignore[index]


def test_post_copy_example_completes() -> None:
    code, status = migrate_json("migration-postcopy.yaml")
    assert code == 0 and status["progress"]["mode"] == "PostCopy"  # type: ignore[index]


def test_schedule_example_switches_to_post_copy_on_the_forecast() -> None:
    code, status = migrate_json("migration-schedule.yaml")
    assert code == 0 and status["progress"]["mode"] == "PostCopy"  # type: ignore[index]
    steps = [(c["action"], c["outcome"], c["forecast"]) for c in status["convergence"]]  # type: ignore[union-attr]
    assert steps == [("raiseDowntime 500", "Taken", "NotConverging"), ("postCopy", "Taken", "NotConverging")]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    return str(path)


BAD = """
apiVersion: domig.dev/v1alpha1
kind: DomainMigration
metadata: {name: bad}
spec:
  domain: web
  source: host-a
  destination: host-b
  flags: [live, warp]
  params: {bandwidth: -5}
"""


@pytest.mark.parametrize("command", ["validate", "migrate"])
def test_bad_documents_are_refused_with_the_fields_named(tmp_path: Path, command: str) -> None:
    done = domig(command, "-f", write(tmp_path, BAD), "--hosts", str(EXAMPLES / "hosts.yaml"))
    assert done.returncode == 2
    assert "spec.flags[1]: warp is not one of: live" in done.stderr
    assert "spec.params[bandwidth]: must be at least 0, got -5" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_validate_checks_host_names_and_yaml(tmp_path: Path) -> None:
    ok = domig("validate", "-f", str(EXAMPLES / "migration-live.yaml"), "--hosts", str(EXAMPLES / "hosts.yaml"))
    assert ok.returncode == 0 and "valid DomainMigration web-to-b" in ok.stdout
    text = (EXAMPLES / "migration-live.yaml").read_text().replace("host-b", "host-z")
    unknown = domig("validate", "-f", write(tmp_path, text), "--hosts", str(EXAMPLES / "hosts.yaml"))
    assert unknown.returncode == 2 and "spec.destination: no host named 'host-z'" in unknown.stderr
    broken = domig("validate", "-f", write(tmp_path, "spec: [unclosed"))
    assert broken.returncode == 2 and "not valid YAML" in broken.stderr


def test_demo_runs_the_embedded_default() -> None:
    done = domig("demo", "-o", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["phase"] == "Succeeded"


def test_ctrl_c_aborts_and_leaves_the_source_running(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli.main",
            "migrate",
            "-o",
            "json",
            "-f",
            str(EXAMPLES / "migration-live.yaml"),
            "--hosts",
            str(EXAMPLES / "hosts.yaml"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
    )
    time.sleep(1.5)  # past start-up, inside a 2 GiB migration that takes about 2.3 s
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    status = json.loads(out)
    assert proc.returncode == 3, err
    assert status["phase"] == "Aborted" and status["source"]["state"] == "running"
    assert status["target"]["state"] == "absent"


def test_a_policy_file_applies_by_labels() -> None:
    done = domig(
        "migrate", "-f", str(EXAMPLES / "migration-policy.yaml"), "--hosts", str(EXAMPLES / "hosts.yaml"),
        "--policies", str(EXAMPLES / "policies.yaml"), "-o", "json",
    )  # fmt: skip
    status = json.loads(done.stdout)
    assert done.returncode == 0, done.stderr
    assert status["policy"] == "stubborn-guests" and status["progress"]["mode"] == "PostCopy"


def test_dry_run_checks_and_moves_nothing() -> None:
    done = domig(
        "migrate", "--dry-run", "-f", str(EXAMPLES / "migration-live.yaml"), "--hosts", str(EXAMPLES / "hosts.yaml"),
        "-o", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert (status["phase"], status["reason"]) == ("Succeeded", "DryRun")
    assert {c["name"] for c in status["preflight"]} >= {"Supported", "HostsReachable", "Domain", "NameFree"}
    assert status.get("migrationStartTime") is None
