"""The test-only control API (``/_test/...``): faults, request log, state. Not xend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict

from aiohttp import web

from xendsim.faults import Faults
from xendsim.node import NODE_KEY, Node


def add_control_routes(app: web.Application) -> None:
    app.router.add_get("/_test/faults", _get_faults)
    app.router.add_post("/_test/faults", _post_faults)
    app.router.add_delete("/_test/faults", _delete_faults)
    app.router.add_get("/_test/requests", _get_requests)
    app.router.add_delete("/_test/requests", _delete_requests)
    app.router.add_get("/_test/state", _get_state)


async def _get_faults(request: web.Request) -> web.Response:
    return web.json_response(request.app[NODE_KEY].faults.as_json())


async def _post_faults(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("expected a JSON object")
        faults = await _set_faults(node, changes)
    except (ValueError, json.JSONDecodeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response(faults.as_json())


async def _delete_faults(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    defaults = asdict(Faults())
    return web.json_response((await _set_faults(node, defaults)).as_json())


async def _set_faults(node: Node, changes: Mapping[str, object]) -> Faults:
    if node.set_faults is None:
        node.faults = node.faults.updated(changes)
        return node.faults
    return await node.set_faults(changes)


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response([r.as_json() for r in request.app[NODE_KEY].requests])


async def _delete_requests(request: web.Request) -> web.Response:
    request.app[NODE_KEY].requests.clear()
    return web.json_response([])


async def _get_state(request: web.Request) -> web.Response:
    node = request.app[NODE_KEY]
    return web.json_response(
        {
            "name": node.config.name,
            "domains": [
                {"name": d.name, "domid": d.domid, "uuid": d.uuid, "memory": d.memory, "state": d.state.value}
                for d in node.state
            ],
        }
    )


def control_app(node: Node) -> web.Application:
    """The /_test routes alone, for a port that stays up while xend's is down."""
    app = web.Application()
    app[NODE_KEY] = node
    add_control_routes(app)
    return app
