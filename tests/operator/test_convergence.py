"""Migrations that finish, through the operator: the forecast and schedule in status and Events,
`kubectl domig force-complete` on a migration that does not converge, limitations said up front."""

from __future__ import annotations

import json

from tests.kube.emulator import ApiServer, KopfOperator
from tests.operator.conftest import NS, events_for, host, migration, until, wait_phase, where
from tests.operator.test_plugin import plugin
from tests.operator.test_policy import policy

SPINNER = [{"name": "web", "memoryMiB": 1024, "dirtyRateMiBps": 900}]


def progress(kube: ApiServer, name: str) -> dict[str, object]:
    return dict(((kube.read("domainmigrations", name, NS) or {}).get("status") or {}).get("progress") or {})


async def test_a_policy_allowing_post_copy_finishes_it_on_the_forecast_with_an_event_per_step(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(policy("finish", allowPostCopy=True, allowAutoConverge=True))
    kube.apply(host("host-a", world, SPINNER))
    kube.apply(host("host-b", world))
    kube.apply(migration("m", params={"bandwidth": 100}))
    await until(lambda: progress(kube, "m").get("forecast") == "NotConverging")
    assert progress(kube, "m").get("etaSeconds") is None  # no made-up number
    done = await wait_phase(kube, "m", {"Succeeded", "Failed", "Aborted"}, within=40)
    status = done["status"]
    assert status["phase"] == "Succeeded", status["message"]
    assert status["schedule"] == "default (policy finish)"
    step = status["convergence"][-1]
    assert (step["action"], step["outcome"], step["forecast"]) == ("postCopy", "Taken", "NotConverging")
    assert status["totalTimeMs"] < 1.5 * 1024 / 100 * 1000
    await until(lambda: any(e["reason"] == "ConvergenceStep" for e in events_for(kube, "m")))
    [event] = [e for e in events_for(kube, "m") if e["reason"] == "ConvergenceStep"]
    assert "step 1, postCopy (notConvergingFor 3): taken" in event["message"]


async def test_kubectl_domig_force_complete_ends_a_non_converging_migration_succeeded(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, SPINNER))
    kube.apply(host("host-b", world))
    kube.apply(migration("m", params={"bandwidth": 100}))
    await until(lambda: progress(kube, "m").get("forecast") == "NotConverging")
    code, out, err = await plugin(kube, "-o", "json", "--interval", "0.2", "force-complete", "m", "--wait")
    assert code == 0, err
    assert "force-complete requested" in err
    status = json.loads(out)
    assert status["phase"] == "Succeeded", status["message"]
    assert status["downtimeMs"] > 1000  # no post-copy enabled: the guest was paused until it arrived
    obj = kube.read("domainmigrations", "m", NS) or {}
    conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conditions["SpecChangeRefused"] == "False"  # forceComplete is a live field
    assert where(world) == {"host-a": "shutoff", "host-b": "running"}


async def test_the_list_says_not_converging_instead_of_an_eta(
    kube: ApiServer, world: str, operator: KopfOperator
) -> None:
    kube.apply(host("host-a", world, SPINNER))
    kube.apply(host("host-b", world))
    kube.apply(migration("m", params={"bandwidth": 100}))
    await until(lambda: progress(kube, "m").get("forecast") == "NotConverging")
    code, out, err = await plugin(kube, "list")
    assert code == 0, err
    assert "not converging" in out and "ETA" not in out
    kube.patch_object("domainmigrations", "m", {"spec": {"abort": True}}, NS)
    await wait_phase(kube, "m", {"Aborted"})
