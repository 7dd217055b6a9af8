"""xend's HTTP API: ``/xend/domain`` and ``/xend/node``, replies in SXP."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import MultiMapping

from xendsim import sxp
from xendsim.args import migrate_args, parse_form
from xendsim.control import add_control_routes
from xendsim.errors import XendError, XendInvalidDomain
from xendsim.migrate import Request, migrate
from xendsim.node import NODE_KEY, Node, RequestRecord
from xendsim.state import Domain, DomainSpec, Power

Form = dict[str, list[str]]
Op = Callable[[Node, Domain, Form], Awaitable[web.Response]]


def xend_app(node: Node) -> web.Application:
    app = web.Application(middlewares=[_xend_middleware])
    app[NODE_KEY] = node
    app.router.add_get("/xend/node", _get_node)
    app.router.add_get("/xend/node/", _get_node)
    app.router.add_get("/xend/domain", _list_domains)
    app.router.add_get("/xend/domain/", _list_domains)
    app.router.add_post("/xend/domain", _post_domains)
    app.router.add_post("/xend/domain/", _post_domains)
    app.router.add_get("/xend/domain/{key}", _get_domain)
    app.router.add_post("/xend/domain/{key}", _post_domain)
    add_control_routes(app)
    return app


# ---- plumbing: request log, injected delay and outage ---------------------------


@web.middleware
async def _xend_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not request.path.startswith("/xend"):
        return await handler(request)
    node = request.app[NODE_KEY]
    if node.faults.http_down:
        # The listener is closed; a kept-alive connection must not get through either.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)
    form = await _form(request)
    node.requests.append(
        RequestRecord(
            method=request.method,
            path=request.path,
            query=_listed(request.query),
            form={k: v for k, v in form.items() if k not in request.query},
        )
    )
    if node.faults.http_delay:
        await asyncio.sleep(node.faults.http_delay)
    return await handler(request)


async def _form(request: web.Request) -> Form:
    """Query and body fields together, as xend's ``req.args`` held them."""
    form = _listed(request.query)
    if request.method == "POST":
        for key, values in _listed(await request.post()).items():
            form.setdefault(key, []).extend(values)
    return form


def _listed(multi: MultiMapping[object]) -> Form:
    out: Form = {}
    for key, value in multi.items():
        out.setdefault(key, []).append(value if isinstance(value, str) else str(value))
    return out


def _sxp_response(value: sxp.Encodable | None, status: int = 200) -> web.Response:
    body = "" if value is None else sxp.encode(value)
    return web.Response(status=status, text=body, content_type=sxp.MIME_TYPE)


def _error_response(message: str) -> web.Response:
    return web.Response(status=500, text=sxp.error(message), content_type=sxp.MIME_TYPE)


def _not_found(key: str) -> web.Response:
    # xend's resource.ErrorPage: an HTML page, not SXP.
    page = f"<html><head><title>404 Not Found</title></head><body><p>Not found: {key}</p></body></html>"
    return web.Response(status=404, text=page, content_type="text/html")


def _accepted(request: web.Request) -> web.Response:
    """What xend's acceptCommand() answered for delete, destroy, start."""
    return web.Response(status=202, headers={"Location": f"{request.url}/.."}, content_type=sxp.MIME_TYPE)


# ---- GET ------------------------------------------------------------------------


async def _get_node(request: web.Request) -> web.Response:
    """XendNode.info() of xend 3.x, in its order: uname, physinfo (memory in MiB), xeninfo, xendinfo."""
    node = request.app[NODE_KEY]
    config = node.config
    major, _, minor = config.version.partition(".")
    return _sxp_response(
        [
            "node",
            ["system", "Linux"],
            ["host", config.node_hostname],
            ["release", "2.6.18-xen"],
            ["version", "#1 SMP xendsim"],
            ["machine", "x86_64"],
            ["nr_cpus", config.nr_cpus],
            ["nr_nodes", 1],
            ["sockets_per_node", 1],
            ["cores_per_socket", config.nr_cpus],
            ["threads_per_core", 1],
            ["cpu_mhz", 2400],
            ["hw_caps", "bfebfbff:20100800:00000000:00000140:0000e3bd:00000000:00000001"],
            ["total_memory", config.total_memory],
            ["free_memory", node.state.free_memory],
            ["xen_major", int(major)],
            ["xen_minor", int(minor or 0)],
            ["xen_extra", ".0"],
            ["xen_caps", "xen-3.0-x86_64 xen-3.0-x86_32p"],
            ["xen_scheduler", "credit"],
            ["xen_pagesize", 4096],
            ["platform_params", "virt_start=0xffff800000000000"],
            ["xen_changeset", "unavailable"],
            ["cc_compiler", "xendsim"],
            ["cc_compile_by", "xendsim"],
            ["cc_compile_domain", "localdomain"],
            ["cc_compile_date", "Thu Jan  1 00:00:00 UTC 1970"],
            ["xend_config_format", 4],
            ["xendsim_name", config.name],
        ]
    )


async def _list_domains(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    if request.query.get("detail"):
        return _sxp_response([d.sxpr() for d in node.state])
    return _sxp_response(node.state.names())


async def _get_domain(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    key = request.match_info["key"]
    try:
        domain = node.state.lookup(key)
    except XendInvalidDomain:
        return _not_found(key)
    return _sxp_response(domain.sxpr())


# ---- POST: xend's SrvBase.perform --------------------------------------------------


async def _post_domain(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    key = request.match_info["key"]
    try:
        domain = node.state.lookup(key)
    except XendInvalidDomain:
        return _not_found(key)
    form = await _form(request)
    op = _op_name(form)
    if isinstance(op, web.Response):
        return op
    handler = DOMAIN_OPS.get(op)
    if handler is None:
        return _not_implemented(op)
    try:
        response = await handler(node, domain, form)
    except XendError as exc:
        return _error_response(str(exc))
    if response.status == 202:
        return _accepted(request)
    return response


async def _post_domains(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    form = await _form(request)
    op = _op_name(form)
    if isinstance(op, web.Response):
        return op
    if op not in ("create", "new"):
        return _not_implemented(op)
    try:
        domain = _create(node, form, start=op == "create")
    except XendError as exc:
        return _error_response(str(exc))
    return _sxp_response(domain.sxpr())


def _op_name(form: Form) -> str | web.Response:
    ops = form.get("op", [])
    if len(ops) != 1:
        return web.Response(status=406, text="Invalid request", content_type="text/plain")
    return ops[0]


def _not_implemented(op: str) -> web.Response:
    return web.Response(status=501, text=f"Operation not implemented: {op}", content_type="text/plain")


def _create(node: Node, form: Form, start: bool) -> Domain:
    (config_text,) = parse_form(form, [("config", "str")]).values()
    try:
        config = sxp.decode(str(config_text))
    except sxp.SxpError as exc:
        raise XendError(f"Coercion to sxpr failed: {exc}") from exc
    fields: dict[str, object] = {k: v for k, v in sxp.to_dict(config).items() if k in _CONFIG_KEYS}
    fields["state"] = "running" if start else "halted"
    fields["managed"] = "0" if start else "1"
    try:
        spec = DomainSpec.from_mapping(fields)
    except ValueError as exc:
        raise XendError(str(exc)) from exc
    return node.state.add(spec)


_CONFIG_KEYS = {"name", "memory", "maxmem", "vcpus", "uuid"}


async def _op_migrate(node: Node, domain: Domain, form: Form) -> web.Response:
    args = parse_form(form, migrate_args(node.config.version))
    request = Request(
        destination=str(args["destination"]),
        port=int(args["port"]),
        live=bool(args["live"]),
        ssl=bool(args.get("ssl", 0)),
        # Xen 3.3 stopped reading resource; it still paces the stream here, when sent.
        resource_mbps=_int_or_zero(form.get("resource")),
    )
    # xend's migration ran in its own thread and finished even if the client hung up.
    task = asyncio.ensure_future(migrate(node, domain, request))
    await asyncio.shield(task)
    return _sxp_response(None)


def _int_or_zero(values: list[str] | None) -> int:
    try:
        return max(int(values[0]), 0) if values else 0
    except ValueError:
        return 0


async def _op_destroy(node: Node, domain: Domain, form: Form) -> web.Response:
    if domain.is_dom0:
        raise XendError(f"Cannot destroy privileged domain {domain.domid}")
    node.state.destroy(domain)
    return web.Response(status=202)


async def _op_delete(node: Node, domain: Domain, form: Form) -> web.Response:
    if domain.state is not Power.HALTED:
        raise XendError(f"Domain '{domain.name}' is not halted.")
    node.state.remove(domain)
    return web.Response(status=202)


async def _op_start(node: Node, domain: Domain, form: Form) -> web.Response:
    if domain.state is not Power.HALTED:
        raise XendError(f"Domain '{domain.name}' is already running.")
    node.state.remove(domain)
    paused = form.get("paused", ["0"])[0] == "1"
    node.state.add(
        DomainSpec(
            name=domain.name,
            memory=domain.memory,
            maxmem=domain.maxmem,
            vcpus=domain.vcpus,
            uuid=domain.uuid,
            state=Power.PAUSED if paused else Power.RUNNING,
            managed=True,
        )
    )
    return web.Response(status=202)


async def _op_pause(node: Node, domain: Domain, form: Form) -> web.Response:
    if domain.is_dom0:
        raise XendError(f"Cannot pause privileged domain {domain.domid}")
    if not domain.state.active and domain.state is not Power.PAUSED:
        raise XendError("Domain is not running")
    domain.state = Power.PAUSED
    return _sxp_response(None)


async def _op_unpause(node: Node, domain: Domain, form: Form) -> web.Response:
    if domain.is_dom0:
        raise XendError(f"Cannot unpause privileged domain {domain.domid}")
    if domain.state is not Power.PAUSED and not domain.state.active:
        raise XendError("Domain is not paused")
    domain.state = Power.RUNNING
    return _sxp_response(None)


DOMAIN_OPS: dict[str, Op] = {
    "migrate": _op_migrate,
    "destroy": _op_destroy,
    "delete": _op_delete,
    "start": _op_start,
    "pause": _op_pause,
    "unpause": _op_unpause,
}
