"""`domig operator`: run the kopf operator against the current kubeconfig, or in-cluster."""

from __future__ import annotations

import argparse
import os
import random
import sys

import kopf
import kubernetes
import prometheus_client

from controller.cli.running import EXIT_INVALID
from controller.operator import logs
from controller.operator.kube import Kube
from controller.operator.startup import Scope, StartupError, check


def cmd_operator(args: argparse.Namespace) -> int:
    if args.webhook_listen:
        os.environ["DOMIG_WEBHOOK_LISTEN"] = args.webhook_listen  # read by the handlers' configuration
    # After the line above: the handlers read their configuration from the environment at import.
    import controller.operator.handlers

    logs.configure(args.log_format, verbose=args.verbose)
    scope = Scope(
        namespaces=tuple(args.namespace or ()),
        peering=None if args.standalone else args.peering,
        webhook=bool(controller.operator.handlers.CONFIG.webhook_listen),
    )
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
