"""`kubectl domig`: start, follow, abort, force to complete and list DomainMigrations in a cluster.

kubectl runs any `kubectl-domig` on the PATH as `kubectl domig ...`; pip installs it with domig.
Argument wiring only: the commands are in controller.cli.cluster, imported once the arguments
parse, so `--help` loads neither kubernetes nor the models.
"""

from __future__ import annotations

import argparse
import sys

from controller.cli.lazy import Lazy

CLUSTER = "controller.cli.cluster"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kubectl domig", description="DomainMigrations in a Kubernetes cluster.")
    top.add_argument("-n", "--namespace", default="default")
    top.add_argument("-o", "--output", choices=("text", "json"), default="text")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between status reads")
    sub = top.add_subparsers(dest="command", required=True)
    m = sub.add_parser("migrate", help="create a DomainMigration (and follow it with --wait)")
    m.add_argument("domain")
    m.add_argument("--from", dest="source", required=True)
    m.add_argument("--to", dest="destination", help="the destination; omitted: the operator chooses one with room")
    m.add_argument(
        "--selector", action="append", help="LABEL=VALUE (repeat): only hosts with these labels, without --to"
    )
    m.add_argument("--flag", action="append", help="a migration flag (repeat); default: live")
    m.add_argument("--param", action="append", help="NAME=VALUE (repeat), e.g. bandwidth=1000")
    m.add_argument("--dname")
    m.add_argument("--name")
    m.add_argument("--wait", action="store_true")
    m.add_argument("--dry-run", action="store_true", help="spec.dryRun: the pre-flight checks only; move nothing")
    m.set_defaults(func=Lazy(CLUSTER, "cmd_migrate"))
    w = sub.add_parser("watch", help="follow a DomainMigration until it ends")
    w.add_argument("name")
    w.set_defaults(func=Lazy(CLUSTER, "cmd_watch"))
    a = sub.add_parser("abort", help="abort a DomainMigration (the record stays)")
    a.add_argument("name")
    a.add_argument("--wait", action="store_true")
    a.set_defaults(func=Lazy(CLUSTER, "cmd_abort"))
    f = sub.add_parser("force-complete", help="finish a running migration now: post-copy, else pause the guest")
    f.add_argument("name")
    f.add_argument("--wait", action="store_true")
    f.set_defaults(func=Lazy(CLUSTER, "cmd_force_complete"))
    ls = sub.add_parser("list", help="DomainMigrations with progress")
    ls.add_argument("-A", "--all-namespaces", action="store_true")
    ls.set_defaults(func=Lazy(CLUSTER, "cmd_list"))
    e = sub.add_parser("evacuate", help="empty a host: spec.evacuate, one placed migration per domain")
    e.add_argument("host")
    e.add_argument(
        "--wait", action="store_true", help="follow it until the host is empty or only what cannot move is left"
    )
    e.add_argument("--cancel", action="store_true", help="spec.evacuate: false: abort what has not finished")
    e.set_defaults(func=Lazy(CLUSTER, "cmd_evacuate"))

    h = sub.add_parser("hosts", help="HypervisorHosts and their probes")
    h.set_defaults(func=Lazy(CLUSTER, "cmd_hosts"))
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Not at the top: --help and a usage error end above, and need no cluster client.
    from controller.cli.cluster import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
