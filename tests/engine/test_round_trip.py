"""There and back: a shut-off definition with the domain's own UUID at the destination is the
domain itself (as libvirt and xend have it), anything else under the name is a NameClash."""

from typing import Any

import pytest

from controller.api import Phase, Reason
from controller.api.status import DomainState
from controller.backends.test.world import domain_record
from tests.engine.conftest import Lab, make_lab, migration

pytestmark = pytest.mark.looptime

WEB_UUID = domain_record({"name": "web"})["uuid"]  # what the test driver gives `web` on any host
OTHER_UUID = "00000000-0000-0000-0000-0000000000aa"
BACK = {"source": "b", "destination": "a"}


def persistent(lab: Lab, host: str, name: str = "web") -> bool:
    return bool(lab.state["hosts"][host]["domains"][name]["persistent"])


async def test_there_and_back_without_undefine_source_succeeds(lab: Lab) -> None:
    there = await lab.run(migration())
    assert there.phase is Phase.Succeeded, there.message
    assert lab.where() == {"a": "shutoff", "b": "running"}  # a keeps the definition, as libvirt does
    back = await lab.run(migration(**BACK))
    assert (back.phase, back.reason) == (Phase.Succeeded, Reason.Completed), back.message
    assert back.message == "migrated: web runs on a"
    assert lab.where() == {"a": "running"}  # b's copy was transient (no persistDest): gone
    assert persistent(lab, "a")  # the definition on a stays defined under the running domain
    assert there.source is not None and back.target is not None and back.target.uuid == there.source.uuid == WEB_UUID
    assert lab.migrate_calls == 2


async def test_there_and_back_and_there_again_with_persist_dest(lab: Lab) -> None:
    flags = ["live", "persistDest"]
    for leg, spec in enumerate([{}, BACK, {}], start=1):
        status = await lab.run(migration(flags=flags, **spec))
        assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), (leg, status.message)
        assert status.target is not None and status.target.uuid == WEB_UUID
    assert lab.where() == {"a": "shutoff", "b": "running"}
    assert persistent(lab, "a") and persistent(lab, "b")
    assert lab.migrate_calls == 3


async def test_the_return_leg_re_applied_moves_nothing(lab: Lab) -> None:
    assert (await lab.run(migration(flags=["live", "persistDest"]))).phase is Phase.Succeeded
    assert (await lab.run(migration(flags=["live", "persistDest"], **BACK))).phase is Phase.Succeeded
    again = await lab.run(migration(flags=["live", "persistDest"], **BACK))
    assert (again.phase, again.reason) == (Phase.Succeeded, Reason.AlreadyAtDestination), again.message
    assert lab.where() == {"a": "running", "b": "shutoff"} and lab.migrate_calls == 2


@pytest.mark.parametrize(
    ("on_b", "text"),
    [
        (
            {"name": "web", "uuid": OTHER_UUID, "running": False},
            f"a domain named web already exists on b (shutoff): a different domain (uuid {OTHER_UUID}, not {WEB_UUID})",
        ),
        (
            {"name": "web", "uuid": OTHER_UUID},
            f"a domain named web already exists on b (running): a different domain (uuid {OTHER_UUID}",
        ),
        # Our own UUID running there too is not a definition to take over.
        ({"name": "web"}, "a domain named web already exists on b (running); set dname"),
        (
            {"name": "web-old", "running": False, "uuid": WEB_UUID},
            f"b already defines this domain (uuid {WEB_UUID}) as web-old (shutoff); migrate it as web-old",
        ),
    ],
)
async def test_anything_but_our_own_shut_off_definition_is_a_name_clash(on_b: dict[str, Any], text: str) -> None:
    lab = make_lab(b={"domains": [on_b]})
    status = await lab.run(migration())
    assert (status.phase, status.reason) == (Phase.Failed, Reason.NameClash)
    assert text in (status.message or ""), status.message
    assert lab.migrate_calls == 0 and lab.domains("a") == {"web": "running"}


async def test_our_shut_off_definition_under_the_dname_takes_the_renamed_domain() -> None:
    lab = make_lab(b={"domains": [{"name": "web-old", "running": False, "uuid": WEB_UUID}]})
    status = await lab.run(migration(dname="web-old"))
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.Completed), status.message
    assert lab.where(WEB_UUID) == {"a": "shutoff", "b": "running"} and lab.domains("b") == {"web-old": "running"}


async def test_a_renamed_domain_comes_back_under_its_old_name_only(lab: Lab) -> None:
    assert (await lab.run(migration(dname="web2"))).phase is Phase.Succeeded
    assert lab.where(WEB_UUID) == {"a": "shutoff", "b": "running"}
    # Back as web2, a would hold one UUID under two names: refused before anything moves.
    refused = await lab.run(migration(domain="web2", **BACK))
    assert (refused.phase, refused.reason) == (Phase.Failed, Reason.NameClash), refused.message
    assert "a already defines this domain" in (refused.message or "") and "(dname: web)" in (refused.message or "")
    back = await lab.run(migration(domain="web2", dname="web", **BACK))
    assert (back.phase, back.reason) == (Phase.Succeeded, Reason.Completed), back.message
    assert lab.domains("a") == {"web": "running"} and lab.domains("b") == {}
    assert lab.migrate_calls == 2


async def test_offline_onto_our_own_definition_is_already_there() -> None:
    lab = make_lab(domains=[{"name": "web", "running": False}], b={"domains": [{"name": "web", "running": False}]})
    status = await lab.run(migration(flags=["offline", "persistDest"]))
    assert (status.phase, status.reason) == (Phase.Succeeded, Reason.AlreadyAtDestination), status.message
    assert status.target is not None and status.target.state is DomainState.shutoff
    assert lab.migrate_calls == 0


async def test_offline_onto_a_different_domain_is_a_name_clash() -> None:
    lab = make_lab(
        domains=[{"name": "web", "running": False}],
        b={"domains": [{"name": "web", "running": False, "uuid": OTHER_UUID}]},
    )
    status = await lab.run(migration(flags=["offline", "persistDest"]))
    assert (status.phase, status.reason) == (Phase.Failed, Reason.NameClash)
    assert "a different domain" in (status.message or "") and lab.migrate_calls == 0
