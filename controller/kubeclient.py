"""An API client for the current cluster, as kubectl finds it.

Apart from the operator's package so that `kubectl domig` talks to the API server without
loading kopf or the operator (and its certificates).
"""

from __future__ import annotations

import os

import kubernetes


def api_client() -> kubernetes.client.ApiClient:
    """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    config = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        # The library reads $KUBECONFIG once, at import; read it now instead.
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.environ.get("KUBECONFIG"), client_configuration=config
        )
    return kubernetes.client.ApiClient(config)
