"""The `test:` block of a test driver host: the domains it starts with, its size, its link, injected faults."""

from typing import Annotated

from pydantic import Field, StrictBool, StrictFloat, StrictInt

from controller.api.base import Model, empty_list


class TestDomain(Model):
    """A domain the in-memory `test` driver starts the host with."""

    __test__ = False  # not a pytest class
    name: str = Field(min_length=1)
    uuid: str | None = None
    memory_mib: Annotated[StrictInt, Field(ge=1)] = Field(1024, alias="memoryMiB")
    dirty_rate_mibps: Annotated[StrictFloat, Field(ge=0)] = Field(0.0, alias="dirtyRateMiBps")
    running: StrictBool = True
    persistent: StrictBool = True
    cpu_model: str | None = Field(None, min_length=1)  # absent: runs on any host's CPU


class TestHostFaults(Model):
    """Failure injection for the `test` driver, as fractions of the data sent."""

    __test__ = False
    unreachable: StrictBool = False
    destination_dies_at: Annotated[StrictFloat, Field(ge=0, le=1)] | None = None
    source_dies_at: Annotated[StrictFloat, Field(ge=0, le=1)] | None = None


# A host that says nothing about its size has room for anything a test puts on it.
DEFAULT_HOST_MEMORY_MIB = 1024 * 1024  # 1 TiB
DEFAULT_HOST_CPUS = 256


class TestHostSpec(Model):
    __test__ = False
    domains: list[TestDomain] = Field(default_factory=empty_list)
    memory_mib: Annotated[StrictInt, Field(ge=1)] = Field(DEFAULT_HOST_MEMORY_MIB, alias="memoryMiB")
    cpus: Annotated[StrictInt, Field(ge=1)] = DEFAULT_HOST_CPUS
    cpu_model: str | None = Field(None, min_length=1)  # absent: runs every guest's CPU
    link_mibps: Annotated[StrictFloat, Field(gt=0)] = Field(1000.0, alias="linkMiBps")
    hostname: str | None = None
    faults: TestHostFaults = Field(default_factory=TestHostFaults)
