"""What the test driver adds to the resource model (see controller/api/drivers.py)."""

from controller.api.drivers import DriverDeclaration, HostOption
from controller.backends.test.options import TestHostSpec

DECLARATION = DriverDeclaration(
    name="test",
    driver="controller.backends.test.driver:TestDriver",
    summary="in memory, with a migration model, for demos and tests (libvirt's test:///default in spirit)",
    uri_schemes=("test",),
    uri_example="test:///default",
    host_options=(HostOption("test", TestHostSpec | None, None, example={}, spread=True),),
)
