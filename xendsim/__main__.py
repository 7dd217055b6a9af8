"""Run one simulated xend host as its own process.

    python -m xendsim --name hostA --listen 127.0.0.1:8000 \\
        --relocation 127.0.0.1:8002 --domain name=web,memory=256 [--config host.yaml]

Prints one line ``XENDSIM READY {json}`` on stdout once it listens; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from xendsim.config import HostConfig, parse_address
from xendsim.host import XendHost
from xendsim.process import READY_PREFIX


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m xendsim", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="YAML file with the options below (flags win)")
    p.add_argument("--name", help="host label (default: xend)")
    p.add_argument("--hostname", help="the host name /xend/node reports (default: the listen host)")
    p.add_argument("--listen", help="xend HTTP address HOST:PORT (default 127.0.0.1:0)")
    p.add_argument("--relocation", help="relocation listener HOST:PORT (default 127.0.0.1:0)")
    p.add_argument("--no-relocation", action="store_true", help="no relocation listener at all")
    p.add_argument("--control", help="extra HOST:PORT serving only /_test (stays up when xend is down)")
    p.add_argument("--version", dest="xen_version", help="xend release: 3.1 (default), 3.4, 4.0, ...")
    p.add_argument("--relocation-default-port", type=int, help="where port=0 goes (default 8002)")
    p.add_argument("--relocation-ssl-port", type=int, help="where port=0 ssl=1 goes (default 8003)")
    p.add_argument("--memory-scale", type=int, help="bytes streamed per MiB of domain memory")
    p.add_argument("--link-mbps", type=float, help="stream pace when resource is 0 (Mbit/s)")
    p.add_argument("--total-memory", type=int, help="host memory in MiB")
    p.add_argument("--nr-cpus", type=int)
    p.add_argument("--domain", action="append", default=[], help="name=web,memory=256[,vcpus=,uuid=,state=]")
    p.add_argument("--fault", action="append", default=[], help="KEY=VALUE, e.g. relocation=reject")
    p.add_argument("--log-level", default="WARNING")
    return p


def config_from(args: argparse.Namespace) -> HostConfig:
    options: dict[str, Any] = {}
    if args.config is not None:
        loaded = yaml.safe_load(args.config.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.config}: expected a mapping")
        options.update(loaded)
    flags = {
        "name": args.name,
        "hostname": args.hostname,
        "http": parse_address(args.listen) if args.listen else None,
        "relocation": parse_address(args.relocation) if args.relocation else None,
        "control": parse_address(args.control) if args.control else None,
        "version": args.xen_version,
        "relocation_default_port": args.relocation_default_port,
        "relocation_ssl_port": args.relocation_ssl_port,
        "memory_scale": args.memory_scale,
        "link_mbps": args.link_mbps,
        "total_memory": args.total_memory,
        "nr_cpus": args.nr_cpus,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    if args.no_relocation:
        options["relocation"] = None
    if args.domain:
        options["domains"] = list(options.get("domains") or []) + list(args.domain)
    if args.fault:
        faults = dict(options.get("faults") or {})
        faults.update(_fault(item) for item in args.fault)
        options["faults"] = faults
    return HostConfig.build(**options)


def _fault(item: str) -> tuple[str, object]:
    key, sep, text = item.partition("=")
    if not sep:
        raise ValueError(f"--fault expects KEY=VALUE, got {item!r}")
    try:
        return key, json.loads(text)
    except json.JSONDecodeError:
        return key, text


async def serve(config: HostConfig) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with XendHost(config) as host:
        print(READY_PREFIX + json.dumps(host.ready_info()), flush=True)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        config = config_from(args)
    except (ValueError, OSError, yaml.YAMLError) as exc:
        print(f"xendsim: {exc}", file=sys.stderr)
        return 2
    asyncio.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
