"""The engine over the xend driver, against two test xends on 127.0.0.1 and 127.0.0.2."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from controller.api import DomainMigrationStatus, Phase, Reason
from controller.api.status import DomainState
from controller.backends.protocol import Credentials
from controller.engine import Transition
from tests.backends.xendlab import SLOW, Engines, XendLab, posts, until, xend_lab
from tests.engine.conftest import Crash, Recorder, migration
from xendsim import Power, XendProcess

UUID = "4f77abd2-3019-58e8-3bab-6fbf2118f880"


def at_home(lab: XendLab) -> bool:
    """After a failure: running on a under its own name, nothing on b."""
    web = lab.a.domain("web")
    return (
        web is not None
        and web.state is Power.RUNNING
        and lab.a.domain("migrating-web") is None
        and lab.b.domain("web") is None
    )


async def test_migrates_between_two_xends() -> None:
    async with xend_lab() as lab:
        status = await lab.run(migration())
        assert status.phase is Phase.Succeeded and status.reason is Reason.Completed, status.message
        web = lab.b.domain("web")
        assert web is not None and web.state is Power.RUNNING and web.uuid == UUID
        assert lab.a.state.names() == ["Domain-0"]
        (post,) = posts(lab.a, "migrate")
        assert post.path == "/xend/domain/web"
        assert post.form == {
            "op": ["migrate"],
            "destination": ["127.0.0.2"],  # synthesised from b's GET /xend/node
            "live": ["1"],
            "port": ["0"],
            "resource": ["0"],
            "node": ["-1"],
            "ssl": ["0"],
            "change_home_server": ["0"],
        }
        assert posts(lab.b, "migrate") == [] and posts(lab.a, "delete") == []
        assert status.target is not None and status.source is not None
        assert (status.target.hostname, status.target.state, status.target.uuid) == ("127.0.0.2", "running", UUID)
        assert status.source.state is DomainState.absent


async def test_xen_port_and_resource_are_sent_and_a_4x_xend_accepts_the_request() -> None:
    async with xend_lab(version="4.0") as lab:
        lab.a.config.relocation_default_port = 1  # only an explicit port can reach b now
        params: dict[str, Any] = {"xen.port": lab.b.relocation_port, "xen.resource": 80}
        status = await lab.run(migration(flags=[], params=params))
        assert status.phase is Phase.Succeeded, status.message
        (post,) = posts(lab.a, "migrate")
        assert post.form["port"] == [str(lab.b.relocation_port)] and post.form["resource"] == ["80"]
        assert post.form["live"] == ["0"]


async def test_undefine_source_deletes_a_managed_domain_left_halted() -> None:
    async with xend_lab(domains=["name=web,memory=256,managed=1"]) as lab:
        status = await lab.run(migration(flags=["live", "undefineSource"]))
        assert status.phase is Phase.Succeeded, status.message
        (delete,) = posts(lab.a, "delete")
        assert delete.path == "/xend/domain/web"
        assert lab.a.domain("web") is None
        assert status.source is not None and status.source.state is DomainState.absent


async def test_undefine_source_sends_no_delete_when_xend_forgot_the_domain() -> None:
    async with xend_lab() as lab:
        status = await lab.run(migration(flags=["live", "undefineSource"]))
        assert status.phase is Phase.Succeeded, status.message
        assert posts(lab.a, "delete") == []


async def test_a_managed_domain_goes_there_and_back_onto_its_halted_definition() -> None:
    async with xend_lab(domains=[f"name=web,memory=256,managed=1,uuid={UUID}"]) as lab:
        there = await lab.run(migration())
        assert there.phase is Phase.Succeeded, there.message
        left = lab.a.domain("web")
        assert left is not None and left.state is Power.HALTED and left.managed  # xend keeps it defined
        back = await lab.run(migration(source="b", destination="a", params={"xen.port": lab.a.relocation_port}))
        assert (back.phase, back.reason) == (Phase.Succeeded, Reason.Completed), back.message
        web = lab.a.domain("web")
        assert web is not None and web.state is Power.RUNNING and web.managed and web.uuid == UUID
        assert lab.b.domain("web") is None  # arrived there unmanaged: gone once it left
        assert back.target is not None and back.target.uuid == UUID
        assert len(posts(lab.a, "migrate")) == 1 and len(posts(lab.b, "migrate")) == 1


async def test_another_domain_under_the_name_is_a_name_clash_before_any_migrate() -> None:
    async with xend_lab(domains=[f"name=web,memory=256,uuid={UUID}"]) as lab:
        lab.b.add_domain("name=web,memory=64,uuid=00000000-0000-0000-0000-0000000000aa,state=halted")
        status = await lab.run(migration())
        assert (status.phase, status.reason) == (Phase.Failed, Reason.NameClash)
        assert "a different domain (uuid 00000000-0000-0000-0000-0000000000aa" in (status.message or "")
        assert posts(lab.a, "migrate") == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"dname": "web2"}, "the xend driver does not support renaming domains during migration"),
        ({"flags": ["live", "paused"]}, "the xend driver does not support flag paused"),
        ({"flags": ["live", "persistDest"]}, "the xend driver does not support flag persistDest"),
        ({"params": {"bandwidth": 100}}, "the xend driver does not support parameter bandwidth"),
    ],
)
async def test_refused_before_any_request(spec: dict[str, Any], message: str) -> None:
    async with xend_lab() as lab:
        status = await lab.run(migration(**spec))
        assert (status.phase, status.reason) == (Phase.Failed, Reason.NoSupport)
        assert status.message == message
        assert lab.a.requests == [] and lab.b.requests == []


@pytest.mark.parametrize("dropper", ["a", "b"])
async def test_dropped_relocation_stream_leaves_the_domain_on_the_source(dropper: str) -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        await getattr(lab, dropper).set_faults(drop_at=0.5)
        status = await lab.run(migration())
        assert (status.phase, status.reason) == (Phase.Failed, Reason.TargetFailed), status.message
        assert "Migration to 127.0.0.2" in (status.message or "")
        assert (status.message or "").endswith("web runs on a")
        assert at_home(lab)
        assert status.source is not None and status.source.state is DomainState.running
        assert status.target is not None and status.target.state is DomainState.absent
        assert len(posts(lab.a, "migrate")) == 1


async def test_relocation_refused_fails_before_anything_moves() -> None:
    async with xend_lab() as lab:
        await lab.b.set_faults(relocation="refuse")
        status = await lab.run(migration())
        assert (status.phase, status.reason) == (Phase.Failed, Reason.TargetFailed), status.message
        assert "the migration did not start" in (status.message or "")
        assert "can't connect: Connection refused" in (status.message or "")
        assert at_home(lab)


@pytest.mark.parametrize("down", ["a", "b"])
async def test_xend_down_is_host_unreachable(down: str) -> None:
    async with xend_lab() as lab:
        await getattr(lab, down).set_faults(http_down=True)
        status = await lab.run(migration())
        assert (status.phase, status.reason) == (Phase.Failed, Reason.HostUnreachable), status.message
        assert f"cannot connect to host {down}" in (status.message or "")
        assert "Connection refused" in (status.message or "")
        assert posts(lab.a, "migrate") == [] and at_home(lab)


async def test_credentials_never_reach_the_status() -> None:
    async with xend_lab() as lab:
        await lab.b.set_faults(http_down=True)
        secret = Credentials({"username": "root", "password": "s3cret-pw"})
        engine = lab.engine(credentials=secret)
        status = await engine.run(migration(hostname="127.0.0.2"))
        assert status.reason is Reason.HostUnreachable
        await lab.b.clear_faults()
        ok = await lab.engine(credentials=secret).run(migration())
        assert ok.phase is Phase.Succeeded
        for seen in (status, ok):
            assert "s3cret" not in json.dumps(seen.dump())


async def test_status_while_migrating_has_elapsed_time_and_no_made_up_progress() -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        rec = Recorder()
        status = await lab.run(migration(), rec)
        assert status.phase is Phase.Succeeded, status.message
        during = [s.progress for s in rec.statuses if s.phase is Phase.Migrating and s.progress is not None]
        assert len(during) >= 5
        elapsed = [p.elapsed_ms for p in during]
        assert all(e is not None for e in elapsed) and elapsed == sorted(elapsed) and elapsed[-1] > elapsed[0]
        assert elapsed[-1] >= 500  # a 1 s stream
        for p in during:
            assert p.percent is None and p.data_total_bytes is None and p.data_remaining_bytes is None
            assert p.bytes_per_second is None and p.eta_seconds is None


async def test_a_paused_incoming_domain_is_not_yet_success() -> None:
    async with xend_lab(faults={"resume_delay": 0.5}) as lab:
        seen: dict[str, Power | None] = {}

        def note(phase: str) -> None:
            web = lab.b.domain("web")
            seen[phase] = web.state if web else None

        rec = Recorder(hooks={Phase.Verifying: lambda: note("verifying"), Phase.Succeeded: lambda: note("succeeded")})
        status = await lab.run(migration(), rec)
        assert status.phase is Phase.Succeeded, status.message
        assert seen == {"verifying": Power.PAUSED, "succeeded": Power.RUNNING}


class CrashAfterTheCall:
    """Records statuses; kills the engine at its first report after the migrate call."""

    def __init__(self) -> None:
        self.statuses: list[DomainMigrationStatus] = []

    async def __call__(self, status: DomainMigrationStatus, transition: Transition | None) -> None:
        self.statuses.append(status.model_copy(deep=True))
        if status.phase is Phase.Migrating and status.progress is not None:
            raise Crash()


async def crash_after_the_call(lab: XendLab) -> DomainMigrationStatus:
    sink = CrashAfterTheCall()
    with pytest.raises(Crash):
        await lab.run(migration(), sink)
    # The process is gone: its HTTP connections drop, xend carries on with the migration.
    await lab.close()
    return sink.statuses[-1]


async def test_restart_during_the_migrate_call_resumes_and_never_calls_again() -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        saved = migration()
        saved.status = await crash_after_the_call(lab)
        assert saved.status.migration_start_time is not None
        assert lab.a.domain("migrating-web") is not None  # still in flight
        rec = Recorder()
        status = await lab.run(saved, rec)
        assert status.phase is Phase.Succeeded, status.message
        assert len(posts(lab.a, "migrate")) == 1
        assert rec.phases == [Phase.Verifying, Phase.Succeeded]
        assert any(s.phase is Phase.Migrating and s.progress is not None for s in rec.statuses)  # re-attached
        web = lab.b.domain("web")
        assert web is not None and web.state is Power.RUNNING and lab.a.state.names() == ["Domain-0"]


async def test_restart_after_the_source_let_go_but_before_the_destination_runs_it() -> None:
    async with xend_lab(faults={"resume_delay": 1.0}) as lab:
        saved = migration()
        saved.status = await crash_after_the_call(lab)
        await until(lambda: lab.a.domain("migrating-web") is None)
        web = lab.b.domain("web")
        assert web is not None and web.state is Power.PAUSED  # xend's source is done; b not yet
        status = await lab.run(saved)
        assert status.phase is Phase.Succeeded, status.message
        assert web.state is Power.RUNNING and len(posts(lab.a, "migrate")) == 1


async def test_restart_after_a_failure_while_down_says_where_the_domain_is() -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        await lab.b.set_faults(drop_at=0.5)
        saved = migration()
        saved.status = await crash_after_the_call(lab)
        await until(lambda: at_home(lab))
        status = await lab.run(saved)
        assert status.phase is Phase.Failed and status.reason is Reason.SourceFailed, status.message
        assert (status.message or "").endswith("web runs on a")
        assert len(posts(lab.a, "migrate")) == 1


async def test_restart_between_the_marker_and_the_call_does_not_call() -> None:
    async with xend_lab() as lab:
        rec = Recorder()
        # The report that saves migrationStartTime comes right before the migrate call.
        for crash_at in range(1, 10):
            rec = Recorder(crash_at=crash_at)
            with pytest.raises(Crash):
                await lab.run(migration(), rec)
            if rec.statuses[-1].migration_start_time is not None:
                break
        assert posts(lab.a, "migrate") == []
        saved = migration()
        saved.status = rec.statuses[-1]
        status = await lab.run(saved)
        # xend keeps no record of migrations, so the engine cannot tell "never sent" from
        # "sent and lost"; it does not risk a second call.
        assert status.phase is Phase.Failed and status.reason is Reason.SourceFailed
        assert posts(lab.a, "migrate") == [] and at_home(lab)


async def test_someone_elses_migration_in_flight_is_busy_not_arrived() -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        form = {"op": "migrate", "destination": "127.0.0.2", "live": "1", "port": "0", "resource": "0"}
        async with aiohttp.ClientSession() as session:
            theirs = asyncio.create_task(session.post(f"{lab.a.url}/xend/domain/web", data=form))
            await until(lambda: lab.a.domain("migrating-web") is not None and lab.b.domain("web") is not None)
            status = await lab.run(migration())
            assert (status.phase, status.reason) == (Phase.Failed, Reason.Busy), status.message
            (await theirs).close()
        assert len(posts(lab.a, "migrate")) == 1


async def test_restart_with_xends_in_their_own_processes() -> None:
    common = ("--memory-scale", str(SLOW))
    async with XendProcess("--name", "hostB", "--listen", "127.0.0.2:0", "--relocation", "127.0.0.2:0", *common) as b:
        async with XendProcess(
            "--name", "hostA", "--listen", "127.0.0.1:0", "--relocation", "127.0.0.1:0",
            "--relocation-default-port", str(b.relocation_port), "--domain", "name=web,memory=256", *common,
        ) as a:  # fmt: skip
            lab = Engines(a.url, b.url)
            saved = migration()
            sink = CrashAfterTheCall()
            with pytest.raises(Crash):
                await lab.engine().run(migration(), sink)
            await lab.close()
            saved.status = sink.statuses[-1]
            status = await lab.engine().run(saved)
            await lab.close()
            assert status.phase is Phase.Succeeded, status.message
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{a.url}/_test/requests") as r:
                    requests = await r.json()
                async with session.get(f"{b.url}/_test/state") as r:
                    b_state = await r.json()
            migrate_posts = [q for q in requests if q["method"] == "POST" and q["form"].get("op") == ["migrate"]]
            assert len(migrate_posts) == 1
            assert {"name": "web", "state": "r-----"}.items() <= next(
                d for d in b_state["domains"] if d["name"] == "web"
            ).items()
