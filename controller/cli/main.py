"""`domig`: run a migration standalone, validate a document, or start the operator.

Argument wiring only: each command lives in its own module and is imported when it runs, so
`domig validate` does not load the operator, nor `domig operator` the xend demo.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from controller.cli.lazy import Lazy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OUTPUTS = ("text", "json", "yaml")


def _standalone(sub: Any) -> None:
    m = sub.add_parser("migrate", help="run a DomainMigration document standalone")
    m.add_argument("-f", "--file", help="the DomainMigration YAML (default: the embedded demo)")
    m.add_argument("--hosts", help="YAML of HypervisorHost documents")
    m.add_argument("--policies", help="YAML of MigrationPolicy documents (selected by the migration's labels)")
    m.add_argument("-o", "--output", choices=OUTPUTS, default="text")
    m.add_argument("--dry-run", action="store_true", help="run the pre-flight checks only; move nothing")
    m.set_defaults(func=Lazy("controller.cli.standalone", "cmd_migrate"))
    d = sub.add_parser("demo", help="migrate the embedded default on the test driver")
    d.add_argument("-o", "--output", choices=OUTPUTS, default="text")
    d.set_defaults(func=Lazy("controller.cli.standalone", "cmd_migrate"), file=None, hosts=None)
    e = sub.add_parser(
        "evacuate",
        help="move every domain running on a host elsewhere, destinations chosen from the hosts file",
        description=(
            "Empty HOST: one live migration (flags live, persistDest, undefineSource: the domain keeps "
            "running, is defined where it lands and no longer on HOST) per domain running or paused on "
            "it, the largest first. Each destination is chosen as `domig migrate` chooses one for a "
            "migration without spec.destination: the same driver, not HOST, not in maintenance or "
            "being evacuated, room for the guest, a compatible CPU where the driver can tell, the "
            "fewest migrations in flight, then the most memory left, then the name. They run side by "
            "side within every host's spec.limits and --max-parallel. A domain no host can take once "
            "nothing else is in flight is reported as Unplaceable and left where it runs. Ctrl-C aborts "
            "what runs and starts nothing more: every domain keeps running, on HOST or where it moved. "
            "Exit 0 only when HOST runs no domain any more; 1 when some are left; 3 when aborted."
        ),
    )
    e.add_argument("host", metavar="HOST", help="the host to empty: a HypervisorHost in the hosts file")
    e.add_argument("--hosts", required=True, help="YAML of HypervisorHost documents: HOST and where domains may go")
    e.add_argument("--max-parallel", type=int, default=5, help="migrations at once, at most (default 5)")
    e.add_argument("--dry-run", action="store_true", help="choose destinations and run the pre-flight checks only")
    e.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    e.set_defaults(func=Lazy("controller.cli.evacuation", "cmd_evacuate"))
    v = sub.add_parser("validate", help="check a DomainMigration document without running it")
    v.add_argument("-f", "--file", required=True)
    v.add_argument("--hosts", help="also check the host names against this hosts file")
    v.set_defaults(func=Lazy("controller.cli.standalone", "cmd_validate"))


def _xend_demo(sub: Any) -> None:
    x = sub.add_parser("xend-demo", help="start two test xends from a hosts file and migrate through them")
    x.add_argument("--hosts", default=str(EXAMPLES / "hosts-xend.yaml"), help="two xend HypervisorHosts")
    x.add_argument("-f", "--file", default=str(EXAMPLES / "migration-xend.yaml"), help="the DomainMigration")
    x.add_argument("-o", "--output", choices=OUTPUTS, default="text")
    x.set_defaults(func=Lazy("controller.cli.xend_demo", "cmd_xend_demo"))


def _operator(sub: Any) -> None:
    p = sub.add_parser("operator", help="run the Kubernetes operator (in a pod, or with your kubeconfig)")
    p.add_argument("-n", "--namespace", action="append", help="watch only these namespaces (default: all)")
    p.add_argument("--peering", default="domig", help="kopf peering name: replicas agree that one acts")
    p.add_argument("--standalone", action="store_true", help="no peering (a single replica)")
    p.add_argument("--priority", type=int, help="peering priority (default: random, so replicas differ)")
    p.add_argument("--liveness", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    p.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    p.add_argument(
        "--webhook-listen",
        metavar="HOST:PORT",
        help="serve the admission webhook here over HTTPS (self-made certificate) and register it with the API server",
    )
    p.add_argument(
        "--log-format",
        choices=("plain", "json"),
        default="plain",
        help="plain lines prefixed [namespace/name], or one JSON object per line (default: plain)",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=Lazy("controller.cli.operator", "cmd_operator"))


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="domig", description="Live-migrate domains between hypervisor hosts.")
    sub = top.add_subparsers(dest="command", required=True)
    _standalone(sub)
    _xend_demo(sub)
    _operator(sub)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Not at the top: --help and a usage error end above, and need none of what running loads.
    from controller.cli.running import finish, run_command

    code = run_command("domig", args.func, args)
    if argv is None:  # the program itself (not a caller in this interpreter): end it now
        finish(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
