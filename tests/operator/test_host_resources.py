"""HypervisorHost look-ups: a host is parsed once per change of the host, not once per look-up.

Admission asks for the limits of the hosts of every waiting migration it looks at; a host's spec
may list hundreds of test domains. Counted, not timed."""

from __future__ import annotations

from typing import Any

from controller.api.hypervisor_host import HostLimits
from controller.operator import host_resources
from controller.operator.host_resources import check_host, limits_of, lookup


def body(uid: str, version: str, max_outbound: int = 2, domains: int = 200) -> dict[str, Any]:
    return {
        "metadata": {"name": "host-a", "uid": uid, "resourceVersion": version},
        "spec": {
            "driver": "test",
            "uri": "test:///default",
            "limits": {"maxOutbound": max_outbound},
            "test": {"domains": [{"name": f"vm-{i}"} for i in range(domains)]},
        },
        "status": {"reachable": True},
    }


def test_a_host_is_parsed_once_per_resource_version() -> None:
    index = {"host-a": [body("uid-1", "10")]}
    before = host_resources.parses
    for _ in range(1_000):
        assert limits_of(index, "host-a") == HostLimits(max_outbound=2)
        assert check_host(index, "host-a", "source", "default").name == "host-a"
    assert host_resources.parses - before == 1

    index["host-a"] = [body("uid-1", "11", max_outbound=3)]  # edited (or probed): parsed again, once
    assert [limits_of(index, "host-a").max_outbound for _ in range(100)] == [3] * 100
    assert host_resources.parses - before == 2

    index["host-a"] = [body("uid-2", "11", max_outbound=4)]  # deleted and made again: another object
    assert limits_of(index, "host-a").max_outbound == 4
    assert host_resources.parses - before == 3


def test_a_host_that_does_not_parse_is_none_and_is_not_parsed_again_until_it_changes() -> None:
    broken = body("uid-3", "20")
    broken["spec"]["driver"] = "nonesuch"
    index = {"host-a": [broken]}
    before = host_resources.parses
    assert [lookup(index, "host-a") for _ in range(50)] == [None] * 50
    assert limits_of(index, "host-a") == HostLimits()
    assert host_resources.parses - before == 1
    assert lookup({}, "host-a") is None
