"""Operator settings, from the environment (the Deployment sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class OperatorConfig:
    max_parallel: int = 5  # KubeVirt's parallelMigrationsPerCluster
    progress_interval: float = 2.0  # at most one progress patch per migration this often
    poll_interval: float = 1.0  # how often the engine reads job statistics
    probe_interval: float = 30.0
    host_retry: float = 5.0  # how often a Pending migration re-checks a missing or unready host
    evacuation_namespace: str = "default"  # where a host's evacuation makes its DomainMigrations
    # The admission webhook: where to listen (host:port), and in a cluster the Service that fronts it.
    webhook_listen: str = ""
    webhook_service: str = ""  # namespace/name[:port]

    @classmethod
    def from_environment(cls) -> OperatorConfig:
        return cls(
            max_parallel=int(_env("DOMIG_MAX_PARALLEL", cls.max_parallel)),
            progress_interval=_env("DOMIG_PROGRESS_INTERVAL", cls.progress_interval),
            poll_interval=_env("DOMIG_POLL_INTERVAL", cls.poll_interval),
            probe_interval=_env("DOMIG_PROBE_INTERVAL", cls.probe_interval),
            host_retry=_env("DOMIG_HOST_RETRY", cls.host_retry),
            evacuation_namespace=os.environ.get("DOMIG_EVACUATION_NAMESPACE", cls.evacuation_namespace),
            webhook_listen=os.environ.get("DOMIG_WEBHOOK_LISTEN", ""),
            webhook_service=os.environ.get("DOMIG_WEBHOOK_SERVICE", ""),
        )
