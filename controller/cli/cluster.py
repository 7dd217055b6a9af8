"""What `kubectl domig` does in a cluster: start, follow, abort and list DomainMigrations, list hosts.

It talks to the API server of the current kubeconfig, as kubectl does, and needs no operator
code: the operator is what answers, somewhere in the cluster.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.table import Table

from controller.api.errors import SpecError
from controller.api.resource import GROUP, VERSION, DomainMigration
from controller.api.status import DomainMigrationStatus
from controller.cli.names import generate_name, name_problem
from controller.cli.render import LiveView, outlook_text
from controller.cli.running import EXIT_FAILED, EXIT_INVALID, EXIT_OK, report, run_command
from controller.cli.stderr import Stderr
from controller.engine.run import Transition
from controller.kubeclient import api_client

PROG = "kubectl domig"
PLURAL = "domainmigrations"
Obj = dict[str, Any]


def _api() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client())


def _status(obj: dict[str, Any]) -> DomainMigrationStatus:
    try:
        return DomainMigrationStatus.parse(DomainMigrationStatus.known(obj.get("status")))
    except SpecError:
        return DomainMigrationStatus()


def cmd_migrate(args: argparse.Namespace) -> int:
    params: dict[str, int | str] = {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        params[key] = int(value) if value.lstrip("-").isdigit() else value
    spec: dict[str, Any] = {"domain": args.domain, "source": args.source}
    if args.destination:
        spec["destination"] = args.destination
    if args.selector:
        spec["destinationSelector"] = dict(item.partition("=")[::2] for item in args.selector)
    spec["flags"] = args.flag or ["live"]
    if params:
        spec["params"] = params
    if args.dname:
        spec["dname"] = args.dname
    if args.dry_run:
        spec["dryRun"] = True
    metadata: dict[str, Any] = {"namespace": args.namespace}
    problems: list[str] = []
    if args.name is not None:
        if problem := name_problem(args.name):
            problems.append(f"metadata.name (--name): {problem}")
        metadata["name"] = args.name
    else:
        # The domain goes verbatim in the spec; only the object's name is made from it.
        metadata["generateName"] = generate_name(args.domain, args.destination or "anywhere")
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DomainMigration", "metadata": metadata, "spec": spec}
    # Check it here first: the same one-line-per-field errors as `domig validate`.
    try:
        DomainMigration.parse({**body, "metadata": {"name": "check", "namespace": args.namespace}})
    except SpecError as exc:
        problems += exc.problems
    if problems:
        raise SpecError(problems)
    created = cast(Obj, _api().create_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, body))
    name = created["metadata"]["name"]
    print(f"domainmigration.{GROUP}/{name} created", file=sys.stderr)
    if not args.wait:
        print(name)
        return EXIT_OK
    return follow(args.namespace, name, args.output, args.interval)


def follow(namespace: str, name: str, output: str, interval: float) -> int:
    """Show the migration's progress until it ends (the same view as `domig migrate`)."""
    api = _api()
    err = Stderr()
    status = DomainMigrationStatus()
    view = LiveView(err.console) if output == "text" else None
    if view is not None:
        view.__enter__()
    try:
        while True:
            before = status.phase
            status = _status(cast(Obj, api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)))
            if view is not None:
                changed = Transition(before, status.phase, status.reason, status.message or "")
                view.show(status, changed if status.phase != before else None)
            if status.phase.terminal:
                break
            time.sleep(interval)
    finally:
        if view is not None:
            view.__exit__(None, None, None)
    return report(status, output, err)


def cmd_watch(args: argparse.Namespace) -> int:
    return follow(args.namespace, args.name, args.output, args.interval)


def cmd_abort(args: argparse.Namespace) -> int:
    _api().patch_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name, {"spec": {"abort": True}})
    print(f"domainmigration.{GROUP}/{args.name} abort requested", file=sys.stderr)
    return follow(args.namespace, args.name, args.output, args.interval) if args.wait else EXIT_OK


def cmd_force_complete(args: argparse.Namespace) -> int:
    patch = {"spec": {"forceComplete": True}}
    _api().patch_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL, args.name, patch)
    print(f"domainmigration.{GROUP}/{args.name} force-complete requested", file=sys.stderr)
    return follow(args.namespace, args.name, args.output, args.interval) if args.wait else EXIT_OK


EVACUATION_COLUMNS = ("DOMAIN", "MIGRATION", "PHASE", "DESTINATION", "MESSAGE")


def cmd_evacuate(args: argparse.Namespace) -> int:
    """spec.evacuate on (or off), and with --wait its status.evacuation until it settles."""
    api = _api()
    patch = {"spec": {"evacuate": not args.cancel}}
    api.patch_cluster_custom_object(GROUP, VERSION, "hypervisorhosts", args.host, patch)
    asked = "cancel requested" if args.cancel else "requested"
    print(f"hypervisorhost.{GROUP}/{args.host} evacuation {asked}", file=sys.stderr)
    if not args.wait:
        return EXIT_OK
    said = ""
    while True:
        host = cast(Obj, api.get_cluster_custom_object(GROUP, VERSION, "hypervisorhosts", args.host))
        evacuation = (host.get("status") or {}).get("evacuation") or {}
        phase = evacuation.get("phase")
        # A cancelled one is the last evacuation's until the operator starts the new one.
        current = phase is not None and (args.cancel or phase != "Cancelled")
        if current and f"{phase}: {evacuation.get('message')}" != said:
            said = f"{phase}: {evacuation.get('message')}"
            print(said, file=sys.stderr)
        settled = phase in ("Completed", "Incomplete") or (phase == "Cancelled" and not evacuation.get("inFlight"))
        if current and settled:
            break
        time.sleep(args.interval)
    if args.output == "json":
        print(json.dumps(evacuation, indent=2))
    else:
        table = Table()
        for column in EVACUATION_COLUMNS:
            table.add_column(column, overflow="fold")
        for entry in evacuation.get("migrations", []):
            table.add_row(entry["domain"], entry["migration"], entry["phase"], entry.get("destination") or "",
                          entry.get("message", ""))  # fmt: skip
        Console(width=200).print(table)
    return EXIT_OK if phase in ("Completed", "Cancelled") else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    api = _api()
    if args.all_namespaces:
        items = cast(Obj, api.list_cluster_custom_object(GROUP, VERSION, PLURAL))["items"]
    else:
        items = cast(Obj, api.list_namespaced_custom_object(GROUP, VERSION, args.namespace, PLURAL))["items"]
    table = Table()
    for column in ("NAMESPACE", "NAME", "DOMAIN", "SOURCE", "DESTINATION", "PHASE", "PROGRESS", "REASON", "MESSAGE"):
        table.add_column(column, overflow="fold")
    for obj in items:
        status, spec = _status(obj), obj.get("spec", {})
        table.add_row(
            obj["metadata"].get("namespace", ""), obj["metadata"]["name"], spec.get("domain", ""),
            spec.get("source", ""), spec.get("destination", ""), status.phase.value,
            _progress(status), status.reason.value if status.reason else "",
            status.message or "",
        )  # fmt: skip
    Console(width=200).print(table)
    return EXIT_OK


HOST_COLUMNS = (
    "NAME", "DRIVER", "URI", "READY", "HOSTNAME", "DOMAINS", "RUNNING", "FREE MEMORY", "TOTAL MEMORY", "CPUS",
    "CPU MODEL", "IN", "OUT", "MESSAGE",
)  # fmt: skip


def cmd_hosts(args: argparse.Namespace) -> int:
    items = cast(Obj, _api().list_cluster_custom_object(GROUP, VERSION, "hypervisorhosts"))["items"]
    table = Table()
    for column in HOST_COLUMNS:
        table.add_column(column, overflow="fold")
    for obj in items:
        status = obj.get("status") or {}
        ready = next((c["status"] for c in status.get("conditions", []) if c.get("type") == "Ready"), "Unknown")
        table.add_row(
            obj["metadata"]["name"], obj["spec"].get("driver", ""), obj["spec"].get("uri", ""), ready,
            _shown(status.get("hostname")), _shown(status.get("domainCount")), _shown(status.get("runningDomains")),
            _size(status.get("memoryFreeBytes")), _size(status.get("memoryTotalBytes")), _shown(status.get("cpus")),
            _shown(status.get("cpuModel")), _shown(status.get("migrationsIn")), _shown(status.get("migrationsOut")),
            status.get("message") or "",
        )  # fmt: skip
    Console(width=240).print(table)
    return EXIT_OK


def _shown(value: object) -> str:
    """A status field as text; one the host did not report is blank (a zero is not)."""
    return "" if value is None else str(value)


def _size(count: object) -> str:
    """Bytes in binary units, one decimal: 1.5 GiB."""
    if not isinstance(count, int):
        return ""
    amount, unit = float(count), "B"
    for bigger in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, bigger
    return f"{count} B" if unit == "B" else f"{amount:.1f} {unit}"


def _progress(status: DomainMigrationStatus) -> str:
    p = status.progress
    if p is None or p.percent is None:
        return ""
    return f"{p.percent:.2f}% {outlook_text(p, markup=False)}".rstrip()


def run(args: argparse.Namespace) -> int:
    """A command's exit code, the API server's refusals and a missing cluster included."""
    try:
        return run_command(PROG, args.func, args)
    except ApiException as exc:
        print(f"{PROG}: the API server said {exc.status} {exc.reason}: {_message(exc)}", file=sys.stderr)
        return EXIT_INVALID if exc.status in (400, 404, 409, 422) else EXIT_FAILED
    except kubernetes.config.ConfigException as exc:
        print(f"{PROG}: no cluster to talk to: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message", exc.body))
    except (TypeError, ValueError):
        return str(exc.body)
