"""Where the engine looks up hosts by name: a hosts file, or HypervisorHost resources."""

from collections.abc import Iterable, Mapping
from typing import Protocol

from controller.api.hypervisor_host import HypervisorHost
from controller.backends.protocol import Credentials, HostConfig


class HostDirectory(Protocol):
    def find(self, name: str) -> HostConfig | None: ...


def host_config(host: HypervisorHost, credentials: Credentials | None = None) -> HostConfig:
    spec = host.spec
    return HostConfig(
        name=host.name,
        driver=spec.driver,
        uri=spec.uri,
        migration_address=spec.migration_address,
        credentials=credentials,
        options=spec.driver_options(),
    )


class StaticHosts:
    def __init__(self, hosts: Iterable[HostConfig]) -> None:
        self._hosts: Mapping[str, HostConfig] = {h.name: h for h in hosts}

    def find(self, name: str) -> HostConfig | None:
        return self._hosts.get(name)

    @property
    def names(self) -> list[str]:
        return sorted(self._hosts)
