"""The xend driver on its own: URIs, SXP, xend's error conventions, lookups and jobs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from controller.api.enums import MigrationFlag, Reason
from controller.api.status import DomainState
from controller.backends.protocol import (
    BackendError,
    Credentials,
    HostCapacity,
    HostConfig,
    JobPhase,
    MigrationRequest,
)
from controller.backends.xend import sxp as xsxp
from controller.backends.xend.driver import XendConnection, XendDriver, state_of
from controller.backends.xend.transport import XendSaidNo, check, parse_uri
from tests.backends.xendlab import SLOW, posts, until, xend_lab
from xendsim import Power
from xendsim.server import xend_app

UUID = "4f77abd2-3019-58e8-3bab-6fbf2118f880"


@pytest.fixture
async def driver() -> AsyncIterator[XendDriver]:
    d = XendDriver()
    yield d
    await d.close()


async def connect(driver: XendDriver, name: str, uri: str) -> XendConnection:
    conn = await driver.connect(HostConfig(name, "xend", uri))
    assert isinstance(conn, XendConnection)
    return conn


# ---- URIs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "base", "socket"),
    [
        ("xend+http://10.0.0.2:8000", "http://10.0.0.2:8000", None),
        ("http://xen-b.example:9000/", "http://xen-b.example:9000", None),
        ("xend+http://xen-b", "http://xen-b:8000", None),
        ("xend+http://[fd00::2]:8000", "http://[fd00::2]:8000", None),
        ("xend+unix:///var/lib/xend/xend-socket", "http://localhost", "/var/lib/xend/xend-socket"),
    ],
)
def test_uri_forms(uri: str, base: str, socket: str | None) -> None:
    endpoint = parse_uri(uri)
    assert (endpoint.base_url, endpoint.socket, endpoint.auth) == (base, socket, None)


def test_credentials_become_basic_auth_and_are_never_shown() -> None:
    endpoint = parse_uri("xend+http://root:s3cret@xen-b:8000")  # refused by the model; ignored here
    assert endpoint.shown == "http://xen-b:8000" and endpoint.auth is None
    assert "s3cret" not in repr(endpoint)
    from_secret = parse_uri("xend+http://xen-b", Credentials({"username": "u", "password": "p"}))
    assert from_secret.auth == "Basic dTpw"
    with pytest.raises(BackendError) as bad:
        parse_uri("qemu+ssh://root:s3cret@xen-b/system")
    assert bad.value.reason is Reason.InvalidSpec and "s3cret" not in bad.value.message


# ---- SXP and xend's ways of saying no ----------------------------------------------


def test_sxp_reads_xend_records_and_errors() -> None:
    (record,) = xsxp.parse(
        "(domain (domid 5) (uuid 4f77abd2-3019-58e8-3bab-6fbf2118f880) (memory 175) (name rhel5) (state -b----))"
    )
    assert xsxp.head(record) == "domain"
    assert xsxp.fields(record)["name"] == "rhel5" and xsxp.fields(record)["state"] == "-b----"
    assert xsxp.error_text("(xend.err 'Missing parameter: node')") == "Missing parameter: node"
    assert xsxp.error_text("(xend.err \"invalid literal for int() with base 10: 'x'\")") == (
        "invalid literal for int() with base 10: 'x'"
    )
    assert xsxp.error_text("(xend.err 'it\\'s (not) fine')") == "it's (not) fine"
    assert xsxp.parse("") == []
    with pytest.raises(xsxp.SxpError):
        xsxp.parse("(domain (name 'open")


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (500, "(xend.err 'Domain is not running')", "Domain is not running"),
        (200, "(xend.err 'Cannot pause privileged domain 0')", "Cannot pause privileged domain 0"),
        (202, "migration failed", "migration failed"),
        (406, "Invalid request", "Invalid request"),
        (501, "", "HTTP 501"),
    ],
)
def test_xend_errors_as_libvirt_read_them(status: int, body: str, said: str) -> None:
    with pytest.raises(XendSaidNo) as error:
        check(status, body, "xend on a")
    assert error.value.xend_message == said and error.value.message == f"xend on a: {said}"


def test_xend_successes_and_not_found() -> None:
    check(200, "", "x")
    check(202, "", "x")
    check(200, "(domain (name web))", "x")
    with pytest.raises(BackendError) as missing:
        check(404, "<html>Not found</html>", "x", missing="no domain web on a")
    assert missing.value.reason is Reason.DomainNotFound


@pytest.mark.parametrize(
    ("flags", "state"),
    [
        ("r-----", DomainState.running),
        ("-b----", DomainState.running),
        ("--p---", DomainState.paused),
        ("-bp---", DomainState.paused),
        ("---s--", DomainState.shutoff),
        ("----c-", DomainState.crashed),
        ("-----d", DomainState.shutoff),
        ("------", DomainState.shutoff),
    ],
)
def test_state_flags(flags: str, state: DomainState) -> None:
    assert state_of(flags) is state


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """A hand-written xend on a loopback port, for answers the test xend never gives; its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_a_200_carrying_xend_err_is_an_error(driver: XendDriver) -> None:
    async def node(request: web.Request) -> web.Response:
        return web.Response(text="(node (host 127.0.0.1) (xen_major 3) (xen_minor 1) (xen_extra .0))")

    async def unpause(request: web.Request) -> web.Response:
        return web.Response(text="(xend.err 'Domain is not paused')")

    app = web.Application()
    app.router.add_get("/xend/node", node)
    app.router.add_post("/xend/domain/{name}", unpause)
    async with served(app) as url:
        conn = await connect(driver, "a", url)
        assert await conn.version() == "xen 3.1.0"
        with pytest.raises(BackendError) as error:
            await conn.resume("web")
        assert "Domain is not paused" in error.value.message


# ---- against the test xend -----------------------------------------------------------


async def test_node_domains_and_lookup(driver: XendDriver) -> None:
    async with xend_lab(domains=[f"name=web,memory=256,uuid={UUID}", "name=old,memory=64,state=halted"]) as lab:
        a = await connect(driver, "a", lab.a.url)
        assert await a.hostname() == "127.0.0.1" and await a.version() == "xen 3.1.0"
        names = {d.name: d for d in await a.list_domains()}
        assert set(names) == {"Domain-0", "web", "old"}
        assert names["old"].state is DomainState.shutoff and names["old"].persistent
        web = await a.lookup("web")
        assert web is not None and web == await a.lookup(UUID)
        assert (web.uuid, web.state, web.memory_bytes) == (UUID, DomainState.running, 256 * 1024 * 1024)
        assert await a.lookup("nope") is None
        assert await a.lookup("1") is None  # xend matches domids too; a name was asked for


MiB = 1024 * 1024


async def test_capacity_from_the_node_record_and_the_domains(driver: XendDriver) -> None:
    domains = [f"name=web,memory=256,uuid={UUID}", "name=db,memory=512,state=paused", "name=old,memory=64,state=halted"]
    async with xend_lab(domains=domains, total_memory=4096, nr_cpus=8) as lab:
        a, b = await connect(driver, "a", lab.a.url), await connect(driver, "b", lab.b.url)
        assert XendDriver.capabilities.capacity and not XendDriver.capabilities.cpu_compare
        # Free is Xen's: 16384 MiB less Domain-0's 1024, web's 256 and db's 512; old is halted.
        assert await a.capacity() == HostCapacity(16384 * MiB, 14592 * MiB, 4, None, 2)
        assert await b.capacity() == HostCapacity(4096 * MiB, 3072 * MiB, 8, None, 0)
        assert await a.guest_cpu("web") is None and await b.cpu_fits("anything") is None  # xend cannot tell


async def test_an_incoming_domain_holds_its_memory_from_the_start_of_the_stream(driver: XendDriver) -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        a, b = await connect(driver, "a", lab.a.url), await connect(driver, "b", lab.b.url)
        await a.migrate(b, MigrationRequest("web", "127.0.0.2", flags=frozenset({MigrationFlag.live})))
        both = await a.capacity(), await b.capacity()
        assert [(c.memory_free_bytes, c.running_domains) for c in both] == [(15104 * MiB, 1), (15104 * MiB, 1)]
        await until(lambda: lab.b.domain("web") is not None and lab.b.domain("web").state is Power.RUNNING)  # type: ignore[union-attr]
        await until(lambda: lab.a.domain("migrating-web") is None)
        assert (await a.capacity()).memory_free_bytes == 15360 * MiB
        assert (await a.capacity()).running_domains == 0


# A Xen 3.1 host's node record, in the shape of xend's XendNode.info(): uname, physinfo (memory in
# MiB), xeninfo, xendinfo; not the test xend's, so that the driver is not read only against it.
XEN_31_NODE = """(node (system Linux) (host xen-b) (release 2.6.18-xen) (version '#1 SMP Tue Jan 15 12:00:00 UTC 2008')
 (machine x86_64) (nr_cpus 8) (nr_nodes 1) (sockets_per_node 2) (cores_per_socket 4) (threads_per_core 1)
 (cpu_mhz 2327) (hw_caps bfebfbff:20100800:00000000:00000140:0004e3bd:00000000:00000001) (total_memory 32767)
 (free_memory 27138) (xen_major 3) (xen_minor 1) (xen_extra .3)
 (xen_caps 'xen-3.0-x86_64 xen-3.0-x86_32p hvm-3.0-x86_32') (xen_scheduler credit) (xen_pagesize 4096)
 (platform_params virt_start=0xffff800000000000) (xen_changeset unavailable)
 (cc_compiler 'gcc version 4.1.2') (cc_compile_by root) (cc_compile_domain localdomain)
 (cc_compile_date 'Tue Jan 15 2008') (xend_config_format 4))"""


@pytest.mark.parametrize(
    ("node", "domains", "expected"),
    [
        (
            XEN_31_NODE,
            "((domain (domid 0) (name Domain-0) (memory 4096) (state r-----))"
            " (domain (domid 3) (name web) (memory 1024) (state -b----))"
            " (domain (domid 4) (name dying) (memory 512) (state ----cd)))",
            HostCapacity(32767 * MiB, 27138 * MiB, 8, None, 1),
        ),
        ("(node (host xen-b) (total_memory lots))", "()", HostCapacity(None, None, None, None, 0)),
    ],
    ids=["xen-3.1", "fields-missing-or-unreadable"],
)
async def test_capacity_from_a_xen_3_1_node_record(
    driver: XendDriver, node: str, domains: str, expected: HostCapacity
) -> None:
    async def node_record(request: web.Request) -> web.Response:
        return web.Response(text=node, content_type="application/sxp")

    async def domain_list(request: web.Request) -> web.Response:
        return web.Response(text=domains, content_type="application/sxp")

    app = web.Application()
    app.router.add_get("/xend/node", node_record)
    app.router.add_get("/xend/domain/", domain_list)
    async with served(app) as url:
        conn = await connect(driver, "a", url)
        assert await conn.capacity() == expected


async def test_in_flight_domain_is_not_found_as_itself_and_a_fresh_driver_sees_the_job(driver: XendDriver) -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        a, b = await connect(driver, "a", lab.a.url), await connect(driver, "b", lab.b.url)
        request = MigrationRequest("web", "127.0.0.2", flags=frozenset({MigrationFlag.live}))
        await a.migrate(b, request)
        # migrate() returned while xend still streams: the source shows migrating-web.
        assert lab.a.domain("migrating-web") is not None
        job = await a.job("web")
        assert job.phase is JobPhase.active and job.elapsed_ms is not None and job.data_total is None
        assert await a.lookup("web") is None and await a.lookup(UUID) is None
        incoming = await b.lookup("web")
        assert incoming is not None and incoming.state is DomainState.paused
        other = XendDriver()  # another process: no task, only xend's view
        try:
            fresh = await connect(other, "a", lab.a.url)
            assert (await fresh.job("web")).phase is JobPhase.active
            with pytest.raises(BackendError) as busy:
                await a.migrate(b, request)
            assert busy.value.reason is Reason.Busy
            await until(lambda: lab.a.domain("migrating-web") is None)
            assert (await fresh.job("web")).phase is JobPhase.none
        finally:
            await other.close()
        await until(lambda: lab.b.domain("web") is not None and lab.b.domain("web").state is Power.RUNNING)  # type: ignore[union-attr]
        done = await a.job("web")
        assert done.phase is JobPhase.completed and done.elapsed_ms is not None and done.elapsed_ms >= 500
        assert len(posts(lab.a, "migrate")) == 1


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (MigrationRequest("web", "h", dname="web2"), "Xen does not support renaming domains during migration"),
        (MigrationRequest("web", "h", flags=frozenset({MigrationFlag.paused})), "xend: unsupported flag paused"),
        (MigrationRequest("web", "h", params={"bandwidth": 1}), "xend: unsupported parameter bandwidth"),
    ],
)
async def test_the_driver_itself_refuses_what_xend_cannot_do(
    driver: XendDriver, request_: MigrationRequest, message: str
) -> None:
    async with xend_lab() as lab:
        a, b = await connect(driver, "a", lab.a.url), await connect(driver, "b", lab.b.url)
        lab.a.requests.clear()
        with pytest.raises(BackendError) as refused:
            await a.migrate(b, request_)
        assert refused.value.reason is Reason.NoSupport and refused.value.message == message
        assert lab.a.requests == []


async def test_a_failed_migration_reports_xends_message(driver: XendDriver) -> None:
    async with xend_lab(memory_scale=SLOW) as lab:
        await lab.a.set_faults(drop_at=0.3)
        a, b = await connect(driver, "a", lab.a.url), await connect(driver, "b", lab.b.url)
        await a.migrate(b, MigrationRequest("web", "127.0.0.2", flags=frozenset({MigrationFlag.live})))
        await until(lambda: lab.a.domain("migrating-web") is None)
        job = await a.job("web")
        async with asyncio.timeout(20):
            while job.phase is JobPhase.active:
                await asyncio.sleep(0.05)  # job() may answer without yielding: give the migrate task its turn
                job = await a.job("web")
        assert job.phase is JobPhase.failed and job.failed_side is None
        assert job.error is not None and job.error.startswith("Migration to 127.0.0.2:")
        assert "connection dropped after" in job.error


async def test_over_the_unix_socket(driver: XendDriver, tmp_path: Path) -> None:
    async with xend_lab() as lab:
        runner = web.AppRunner(xend_app(lab.a.node))
        await runner.setup()
        path = tmp_path / "xend-socket"
        await web.UnixSite(runner, str(path)).start()
        try:
            a = await connect(driver, "a", f"xend+unix://{path}")
            web_info = await a.lookup("web")
            assert web_info is not None and web_info.running
            assert await a.hostname() == "127.0.0.1"
        finally:
            await runner.cleanup()


async def test_unreachable_xend(driver: XendDriver) -> None:
    async with xend_lab() as lab:
        await lab.b.set_faults(http_down=True)
        with pytest.raises(BackendError) as down:
            await driver.connect(HostConfig("b", "xend", lab.b.url))
        assert down.value.reason is Reason.HostUnreachable
        assert down.value.message == f"cannot reach xend at {lab.b.url}: Connection refused"
