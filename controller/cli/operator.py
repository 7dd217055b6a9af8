"""`domig operator`: run the kopf operator against the current kubeconfig, or in-cluster."""

from __future__ import annotations

import argparse
import os
import random
import sys
from typing import Any


def add_parser(sub: Any) -> None:
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
    p.set_defaults(func=cmd_operator)


def cmd_operator(args: argparse.Namespace) -> int:
    if args.webhook_listen:
        os.environ["DOMIG_WEBHOOK_LISTEN"] = args.webhook_listen  # read by the handlers' configuration
    import kopf
    import kubernetes
    import prometheus_client

    import controller.operator.handlers  # noqa: F401  (registers the handlers with kopf)
    from controller.cli.main import EXIT_INVALID
    from controller.operator import logs
    from controller.operator.kube import Kube
    from controller.operator.startup import Scope, StartupError, check

    logs.configure(args.log_format, verbose=args.verbose)
    scope = Scope(namespaces=tuple(args.namespace or ()), peering=None if args.standalone else args.peering)
    try:
        check(Kube.from_environment().client, scope)
    except StartupError as exc:
        print(f"domig operator: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except kubernetes.config.ConfigException as exc:
        print(f"domig operator: no cluster to talk to: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        standalone=args.standalone,
        peering_name=scope.peering,
        # Equal priorities make every replica pause; random ones elect one.
        priority=args.priority if args.priority is not None else random.randint(1, 1_000_000),
        liveness_endpoint=args.liveness,
    )
    return 0
