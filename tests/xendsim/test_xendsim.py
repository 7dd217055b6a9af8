"""The simulated xend, over real sockets: two hosts on 127.0.0.1 and 127.0.0.2."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from xendsim import Power, XendHost, XendProcess, sxp
from xendsim.args import migrate_args, parse_form
from xendsim.errors import ArgError

# 256 MiB * 1024 B/MiB = 256 KiB; at the default 8 Mbit/s that streams in ~0.26 s.
FAST = 1024
# ~1 s for a 256 MiB domain: long enough to look at it in flight.
SLOW = 4096


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def dest() -> AsyncIterator[XendHost]:
    async with XendHost(name="hostB", http=("127.0.0.2", 0), relocation=("127.0.0.2", 0), memory_scale=FAST) as host:
        yield host


@pytest.fixture
async def source(dest: XendHost) -> AsyncIterator[XendHost]:
    async with XendHost(
        name="hostA",
        domains=["name=web,memory=256,uuid=4f77abd2-3019-58e8-3bab-6fbf2118f880", "name=db,memory=128"],
        # port=0 goes where hostB listens, as if both used the same xend-relocation-port.
        relocation_default_port=dest.relocation_port,
        memory_scale=FAST,
    ) as host:
        yield host


def migrate_form(dest: XendHost, **extra: str) -> dict[str, str]:
    form = {
        "op": "migrate",
        "destination": "127.0.0.2",
        "live": "1",
        "resource": "0",
        "port": str(dest.relocation_port),
    }
    form.update(extra)
    return form


async def get_sxp(session: aiohttp.ClientSession, url: str) -> tuple[int, sxp.Sxp | None]:
    async with session.get(url) as r:
        text = await r.text()
        return r.status, sxp.decode(text) if r.status == 200 else None


async def post(session: aiohttp.ClientSession, url: str, form: dict[str, str]) -> tuple[int, str]:
    async with session.post(url, data=form) as r:
        return r.status, await r.text()


def assert_home(source: XendHost, dest: XendHost, name: str = "web") -> None:
    """After a failure: running at the source under its own name, nothing at the destination."""
    domain = source.domain(name)
    assert domain is not None and domain.state is Power.RUNNING
    assert source.domain(f"migrating-{name}") is None
    assert dest.domain(name) is None


# ---- SXP --------------------------------------------------------------------------


def test_sxp_round_trip_of_a_domain_record() -> None:
    text = (
        "(domain (domid 5) (uuid 4f77abd2-3019-58e8-3bab-6fbf2118f880) (vcpus 1) (memory 175)"
        " (maxmem 385) (name rhel5) (state -b----) (cpu_time 137.18) (online_vcpus 1) (up_time 66492.0))"
    )
    value = sxp.decode(text)
    assert sxp.encode(value) == text
    assert sxp.name(value) == "domain"
    assert sxp.child_value(value, "state") == "-b----"
    assert sxp.to_dict(value)["memory"] == "175"


def test_sxp_quotes_like_xend_and_reads_both_quotes() -> None:
    assert sxp.error("Missing parameter: node") == "(xend.err 'Missing parameter: node')"
    tricky = 'it\'s (not) ok\\ "really"'
    assert sxp.decode(sxp.error(tricky)) == ["xend.err", tricky]
    assert sxp.decode("(x \"a b\" 'c d' t nil 5)") == ["x", "a b", "c d", "t", "nil", "5"]
    with pytest.raises(sxp.SxpError):
        sxp.decode("(unclosed")
    with pytest.raises(sxp.SxpError):
        sxp.decode("(a) (b)")


def test_form_args_follow_xend_versions() -> None:
    libvirt_2007 = {"op": ["migrate"], "destination": ["h"], "live": ["1"], "resource": ["0"], "port": ["0"]}
    assert parse_form(libvirt_2007, migrate_args("3.1"))["port"] == 0
    with pytest.raises(ArgError, match="Missing parameter: node"):
        parse_form(libvirt_2007, migrate_args("3.4"))
    with pytest.raises(ArgError, match="invalid literal"):
        parse_form({**libvirt_2007, "live": ["yes"]}, migrate_args("3.1"))
    with pytest.raises(ArgError, match="Too many values for port"):
        parse_form({**libvirt_2007, "port": ["1", "2"]}, migrate_args("3.1"))


# ---- lookups ----------------------------------------------------------------------


async def test_domain_lookup_by_name_id_and_uuid(source: XendHost, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{source.url}/xend/domain/web?detail=1") as r:
        assert r.status == 200
        assert r.content_type == "application/sxp"
        record = sxp.decode(await r.text())
    fields = sxp.to_dict(record)
    assert sxp.name(record) == "domain"
    assert (fields["name"], fields["memory"], fields["state"]) == ("web", "256", "r-----")
    assert fields["uuid"] == "4f77abd2-3019-58e8-3bab-6fbf2118f880"
    for key in (fields["domid"], fields["uuid"]):
        status, again = await get_sxp(session, f"{source.url}/xend/domain/{key}")
        assert status == 200 and sxp.child_value(again, "name") == "web"  # type: ignore[arg-type]


async def test_unknown_domain_is_404(source: XendHost, session: aiohttp.ClientSession) -> None:
    status, _ = await get_sxp(session, f"{source.url}/xend/domain/nosuch?detail=1")
    assert status == 404
    status, _ = await post(session, f"{source.url}/xend/domain/nosuch", {"op": "pause"})
    assert status == 404


async def test_domain_list_and_node(source: XendHost, dest: XendHost, session: aiohttp.ClientSession) -> None:
    status, names = await get_sxp(session, f"{source.url}/xend/domain/")
    assert status == 200 and names == ["Domain-0", "web", "db"]
    status, detailed = await get_sxp(session, f"{source.url}/xend/domain?detail=1")
    assert isinstance(detailed, list) and [sxp.child_value(d, "name") for d in detailed] == names
    status, node = await get_sxp(session, f"{dest.url}/xend/node")
    assert status == 200 and sxp.name(node) == "node"  # type: ignore[arg-type]
    info = sxp.to_dict(node)  # type: ignore[arg-type]
    assert info["host"] == "127.0.0.2"
    assert (info["xen_major"], info["xen_minor"]) == ("3", "1")
    assert int(info["free_memory"]) == int(info["total_memory"]) - 1024  # Domain-0 only
    # xend 3.x's XendNode.info(), in its order: uname, physinfo, xeninfo, xendinfo (and the simulator's name).
    assert [sxp.name(field) for field in node[1:]] == [  # type: ignore[index, arg-type]
        "system", "host", "release", "version", "machine",
        "nr_cpus", "nr_nodes", "sockets_per_node", "cores_per_socket", "threads_per_core", "cpu_mhz", "hw_caps",
        "total_memory", "free_memory",
        "xen_major", "xen_minor", "xen_extra", "xen_caps", "xen_scheduler", "xen_pagesize", "platform_params",
        "xen_changeset", "cc_compiler", "cc_compile_by", "cc_compile_domain", "cc_compile_date",
        "xend_config_format", "xendsim_name",
    ]  # fmt: skip
    status, node = await get_sxp(session, f"{source.url}/xend/node")
    info = sxp.to_dict(node)  # type: ignore[arg-type]
    running = 1024 + 256 + 128  # Domain-0, web, db
    assert (int(info["total_memory"]), int(info["free_memory"]), info["nr_cpus"]) == (16384, 16384 - running, "4")


# ---- migration --------------------------------------------------------------------


async def test_migrate_moves_the_domain(source: XendHost, dest: XendHost, session: aiohttp.ClientSession) -> None:
    uuid = source.domain("web").uuid  # type: ignore[union-attr]
    started = time.monotonic()
    status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    elapsed = time.monotonic() - started
    assert (status, body) == (200, "")
    assert source.domain("web") is None and source.domain("migrating-web") is None
    status, record = await get_sxp(session, f"{dest.url}/xend/domain/web")
    assert status == 200
    fields = sxp.to_dict(record)  # type: ignore[arg-type]
    assert (fields["state"], fields["uuid"], fields["memory"]) == ("r-----", uuid, "256")
    # 256 KiB at 8 Mbit/s: paced, not instantaneous.
    assert elapsed >= 0.2
    assert source.domain("db") is not None  # only the one domain moved


async def test_migrate_duration_follows_memory_and_resource(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession
) -> None:
    started = time.monotonic()
    await post(session, f"{source.url}/xend/domain/db", migrate_form(dest))  # 128 MiB at 8 Mbit/s
    small = time.monotonic() - started
    started = time.monotonic()
    await post(session, f"{source.url}/xend/domain/web", migrate_form(dest, resource="32"))
    fast = time.monotonic() - started
    assert dest.domain("db") is not None and dest.domain("web") is not None
    assert 0.1 <= small < 0.5  # ~0.13 s
    assert fast < small  # twice the memory, four times the bandwidth


async def test_in_flight_names_and_states(session: aiohttp.ClientSession) -> None:
    async with (
        XendHost(name="B", http=("127.0.0.2", 0), relocation=("127.0.0.2", 0), memory_scale=SLOW) as dest,
        XendHost(name="A", domains=["name=web,memory=256"], memory_scale=SLOW) as source,
    ):
        migration = asyncio.create_task(post(session, f"{source.url}/xend/domain/web", migrate_form(dest)))
        seen_src, seen_dst = None, None
        for _ in range(100):
            await asyncio.sleep(0.05)
            status_src, seen_src = await get_sxp(session, f"{source.url}/xend/domain/migrating-web")
            status_dst, seen_dst = await get_sxp(session, f"{dest.url}/xend/domain/web")
            if status_src == 200 and status_dst == 200:
                break
        assert seen_src is not None and seen_dst is not None, "never saw the migration in flight"
        assert sxp.child_value(seen_src, "state") == "r-----"  # live: still running at the source
        assert sxp.child_value(seen_dst, "state") == "--p---"  # restoring: paused at the destination
        status, _ = await get_sxp(session, f"{source.url}/xend/domain/web")
        assert status == 404  # the name has moved
        status, body = await post(session, f"{source.url}/xend/domain/migrating-web", migrate_form(dest))
        assert (status, sxp.decode(body)) == (500, ["xend.err", "Domain is already being migrated"])
        assert not migration.done()
        assert await migration == (200, "")
        assert dest.domain("web").state is Power.RUNNING  # type: ignore[union-attr]
        assert source.domain("migrating-web") is None


async def test_non_live_migration_pauses_the_source(session: aiohttp.ClientSession) -> None:
    async with (
        XendHost(name="B", http=("127.0.0.2", 0), relocation=("127.0.0.2", 0), memory_scale=SLOW) as dest,
        XendHost(name="A", domains=["name=web,memory=128"], memory_scale=SLOW) as source,
    ):
        migration = asyncio.create_task(post(session, f"{source.url}/xend/domain/web", migrate_form(dest, live="0")))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if source.domain("migrating-web") is not None:
                break
        assert source.domain("migrating-web").state is Power.PAUSED  # type: ignore[union-attr]
        assert (await migration)[0] == 200


@pytest.mark.parametrize("side", ["source", "dest"])
async def test_dropped_stream_leaves_the_domain_at_home(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession, side: str
) -> None:
    await (source if side == "source" else dest).set_faults(drop_at=0.5)
    status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert status == 500
    err = sxp.decode(body)
    assert sxp.name(err) == "xend.err"
    assert "127.0.0.2" in str(err[1])
    await asyncio.sleep(0.1)  # the destination notices the reset on its own time
    assert_home(source, dest)
    status, record = await get_sxp(session, f"{source.url}/xend/domain/web")
    assert status == 200 and sxp.child_value(record, "state") == "r-----"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "message"),
    [("refuse", "can't connect"), ("reject", "Relocation refused"), ("hangup", "connection closed")],
)
async def test_relocation_refused(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession, mode: str, message: str
) -> None:
    await dest.set_faults(relocation=mode)
    status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert status == 500
    assert message in str(sxp.decode(body)[1])
    assert_home(source, dest)
    # Listening again on the same port: the same request now succeeds.
    await dest.clear_faults()
    status, _ = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert status == 200 and dest.domain("web") is not None


async def test_missing_field_is_rejected_before_anything_moves(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession
) -> None:
    form = migrate_form(dest)
    del form["resource"]
    status, body = await post(session, f"{source.url}/xend/domain/web", form)
    assert (status, sxp.decode(body)) == (500, ["xend.err", "Missing parameter: resource"])
    assert_home(source, dest)


async def test_version_4_needs_the_later_fields(dest: XendHost, session: aiohttp.ClientSession) -> None:
    async with XendHost(name="A4", version="4.0", domains=["name=web"], memory_scale=FAST) as source:
        status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
        assert (status, sxp.decode(body)) == (500, ["xend.err", "Missing parameter: node"])
        later = migrate_form(dest, node="-1", ssl="0", change_home_server="0")
        status, _ = await post(session, f"{source.url}/xend/domain/web", later)
        assert status == 200 and dest.domain("web") is not None


async def test_unknown_field_is_ignored(source: XendHost, dest: XendHost, session: aiohttp.ClientSession) -> None:
    status, _ = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest, bogus="1", node="-1", ssl="0"))
    assert status == 200
    assert dest.domain("web") is not None and source.domain("web") is None


async def test_port_zero_uses_the_default_relocation_port(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession
) -> None:
    status, _ = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest, port="0"))
    assert status == 200 and dest.domain("web") is not None
    # Pointing the default elsewhere makes the same request fail: the default is what was used.
    async with XendHost(name="C", domains=["name=x"], relocation_default_port=free_port(), memory_scale=FAST) as other:
        status, body = await post(session, f"{other.url}/xend/domain/x", migrate_form(dest, port="0"))
        assert (status, sxp.decode(body)) == (500, ["xend.err", "can't connect: Connection refused"])


async def test_port_zero_with_ssl_uses_the_ssl_port(dest: XendHost, session: aiohttp.ClientSession) -> None:
    async with XendHost(
        name="A34",
        version="3.4",
        domains=["name=web"],
        relocation_default_port=free_port(),
        relocation_ssl_port=dest.relocation_port,
        memory_scale=FAST,
    ) as source:
        form = migrate_form(dest, port="0", node="-1", ssl="1")
        status, _ = await post(session, f"{source.url}/xend/domain/web", form)
        assert status == 200 and dest.domain("web") is not None


async def test_refuses_domain0_and_domains_not_running(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession
) -> None:
    status, body = await post(session, f"{source.url}/xend/domain/Domain-0", migrate_form(dest))
    assert status == 500 and "Cannot migrate privileged domain" in body
    assert (await post(session, f"{source.url}/xend/domain/web", {"op": "pause"}))[0] == 200
    status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert (status, sxp.decode(body)) == (500, ["xend.err", "Domain is not running"])
    assert dest.domain("web") is None


async def test_migrating_to_the_same_host(session: aiohttp.ClientSession) -> None:
    async with XendHost(name="solo", domains=["name=web"], memory_scale=FAST) as host:
        form = {"op": "migrate", "destination": "127.0.0.1", "live": "1", "resource": "0"}
        form["port"] = str(host.relocation_port)
        status, _ = await post(session, f"{host.url}/xend/domain/web", form)
        assert status == 200
        assert host.state.names() == ["Domain-0", "web"]
        assert host.domain("web").domid == 2  # type: ignore[union-attr]  # a new domain


async def test_destination_without_room_refuses(source: XendHost, session: aiohttp.ClientSession) -> None:
    async with XendHost(name="tiny", http=("127.0.0.2", 0), relocation=("127.0.0.2", 0), total_memory=1100) as small:
        status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(small))
        assert status == 500 and "but only" in sxp.decode(body)[1]
        assert_home(source, small)


async def test_late_resume_is_visible_after_migrate_returns(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession
) -> None:
    await dest.set_faults(resume_delay=0.5)
    status, _ = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert status == 200
    assert dest.domain("web").state is Power.PAUSED  # type: ignore[union-attr]
    await asyncio.sleep(0.7)
    assert dest.domain("web").state is Power.RUNNING  # type: ignore[union-attr]


WEB_UUID = "4f77abd2-3019-58e8-3bab-6fbf2118f880"


async def test_a_domain_arrives_on_its_own_halted_managed_definition(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession
) -> None:
    dest.add_domain(f"name=web,memory=256,uuid={WEB_UUID},state=halted")
    status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert (status, body) == (200, "")
    web = dest.domain("web")
    assert web is not None and web.state is Power.RUNNING and web.domid is not None
    assert web.managed and web.uuid == WEB_UUID  # the incoming domain took the managed entry
    status, record = await get_sxp(session, f"{dest.url}/xend/domain/web")
    assert status == 200 and sxp.child_value(record, "domid") == str(web.domid)  # type: ignore[arg-type]
    assert [d.name for d in dest.state].count("web") == 1


@pytest.mark.parametrize(("state", "where"), [("halted", ""), ("running", " as domain 1")])
async def test_another_vm_under_the_name_is_refused_as_xend_did(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession, state: str, where: str
) -> None:
    dest.add_domain(f"name=web,memory=64,uuid=00000000-0000-0000-0000-0000000000aa,state={state}")
    status, body = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert status == 500 and f"VM name 'web' already exists{where}" in sxp.decode(body)[1]
    source_web = source.domain("web")
    assert source_web is not None and source_web.state is Power.RUNNING
    other = dest.domain("web")
    assert other is not None and other.uuid.endswith("aa") and other.state is Power.parse(state)


async def test_a_dropped_stream_onto_the_managed_definition_leaves_it_halted(
    source: XendHost, dest: XendHost, session: aiohttp.ClientSession
) -> None:
    dest.add_domain(f"name=web,memory=256,uuid={WEB_UUID},state=halted")
    await dest.set_faults(drop_at=0.5)
    status, _ = await post(session, f"{source.url}/xend/domain/web", migrate_form(dest))
    assert status == 500
    await asyncio.sleep(0.1)  # the destination notices the reset on its own time
    web = dest.domain("web")
    assert web is not None and web.state is Power.HALTED and web.domid is None and web.managed
    assert source.domain("web").state is Power.RUNNING  # type: ignore[union-attr]


# ---- other operations -------------------------------------------------------------


async def test_pause_unpause_destroy_delete_and_create(source: XendHost, session: aiohttp.ClientSession) -> None:
    url = f"{source.url}/xend/domain/web"
    assert (await post(session, url, {"op": "pause"}))[0] == 200
    assert source.domain("web").state is Power.PAUSED  # type: ignore[union-attr]
    assert (await post(session, url, {"op": "unpause"}))[0] == 200
    assert source.domain("web").state is Power.RUNNING  # type: ignore[union-attr]
    status, body = await post(session, url, {"op": "delete"})
    assert status == 500 and "not halted" in body
    assert (await post(session, url, {"op": "destroy"}))[0] == 202
    assert source.domain("web") is None
    assert (await post(session, f"{source.url}/xend/domain/Domain-0", {"op": "destroy"}))[0] == 500
    assert (await post(session, f"{source.url}/xend/domain/db", {"op": "frobnicate"}))[0] == 501
    assert (await post(session, f"{source.url}/xend/domain/db", {}))[0] == 406

    config = "(vm (name fresh) (memory 64) (vcpus 2))"
    status, body = await post(session, f"{source.url}/xend/domain/", {"op": "new", "config": config})
    assert status == 200 and sxp.child_value(sxp.decode(body), "state") == "------"
    assert (await post(session, f"{source.url}/xend/domain/fresh", {"op": "start"}))[0] == 202
    assert source.domain("fresh").state is Power.RUNNING  # type: ignore[union-attr]
    assert (await post(session, f"{source.url}/xend/domain/fresh", {"op": "destroy"}))[0] == 202
    assert source.domain("fresh").state is Power.HALTED  # type: ignore[union-attr]  # managed: stays defined
    assert (await post(session, f"{source.url}/xend/domain/fresh", {"op": "delete"}))[0] == 202
    assert source.domain("fresh") is None


# ---- test-only controls -----------------------------------------------------------


async def test_request_log_records_forms(source: XendHost, dest: XendHost, session: aiohttp.ClientSession) -> None:
    await get_sxp(session, f"{source.url}/xend/domain/web?detail=1")
    await post(session, f"{source.url}/xend/domain/web", {"op": "pause", "extra": "x"})
    async with session.get(f"{source.url}/_test/requests") as r:
        log = await r.json()
    assert [(e["method"], e["path"]) for e in log] == [
        ("GET", "/xend/domain/web"),
        ("POST", "/xend/domain/web"),
    ]
    assert log[0]["query"] == {"detail": ["1"]}
    assert log[1]["form"] == {"op": ["pause"], "extra": ["x"]}
    assert dest.requests == []  # a migration needs no HTTP request to the destination


async def test_slow_xend(source: XendHost, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{source.url}/_test/faults", json={"http_delay": 0.3}) as r:
        assert (await r.json())["http_delay"] == 0.3
    started = time.monotonic()
    status, _ = await get_sxp(session, f"{source.url}/xend/domain/web")
    assert status == 200 and time.monotonic() - started >= 0.3
    async with session.post(f"{source.url}/_test/faults", json={"nonsense": 1}) as r:
        assert r.status == 400


async def test_xend_down(session: aiohttp.ClientSession) -> None:
    async with XendHost(name="down", domains=["name=web"], control=("127.0.0.1", 0)) as host:
        control = host.control_url
        async with session.post(f"{control}/_test/faults", json={"http_down": True}) as r:
            assert r.status == 200
        async with aiohttp.ClientSession() as fresh:
            with pytest.raises(aiohttp.ClientConnectionError):
                await get_sxp(fresh, f"{host.url}/xend/domain/web")
        # A connection kept alive from before the outage gets nowhere either.
        with pytest.raises(aiohttp.ClientConnectionError):
            await get_sxp(session, f"{host.url}/xend/domain/web")
        assert host.requests == []
        async with session.delete(f"{control}/_test/faults") as r:
            assert (await r.json())["http_down"] is False
        async with aiohttp.ClientSession() as fresh:
            status, _ = await get_sxp(fresh, f"{host.url}/xend/domain/web")
        assert status == 200


# ---- as its own process -------------------------------------------------------------


async def test_subprocess_receives_a_migration(
    source: XendHost, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    config = tmp_path / "hostB.yaml"
    config.write_text(
        "name: procB\nhostname: 127.0.0.2\nmemory_scale: 1024\ndomains:\n  - {name: resident, memory: 64}\n"
    )
    async with XendProcess(
        "--config", str(config), "--listen", "127.0.0.2:0", "--relocation", "127.0.0.2:0",
        "--domain", "name=other,memory=32",
    ) as proc:  # fmt: skip
        status, node = await get_sxp(session, f"{proc.url}/xend/node")
        assert status == 200 and sxp.child_value(node, "host") == "127.0.0.2"  # type: ignore[arg-type]
        status, names = await get_sxp(session, f"{proc.url}/xend/domain/")
        assert names == ["Domain-0", "resident", "other"]
        form = {"op": "migrate", "destination": "127.0.0.2", "live": "1", "resource": "0"}
        form["port"] = str(proc.relocation_port)
        status, _ = await post(session, f"{source.url}/xend/domain/web", form)
        assert status == 200
        status, record = await get_sxp(session, f"{proc.url}/xend/domain/web")
        assert status == 200 and sxp.child_value(record, "state") == "r-----"  # type: ignore[arg-type]
        pid = proc.pid
    assert proc.returncode == 0  # SIGTERM is a clean stop
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


async def test_subprocess_rejects_a_bad_config() -> None:
    with pytest.raises(RuntimeError, match="exited before it was ready"):
        async with XendProcess("--version", "9.9"):
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
