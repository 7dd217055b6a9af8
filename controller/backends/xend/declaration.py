"""What the xend driver adds to the resource model (see controller/api/drivers.py)."""

from controller.api.drivers import DriverDeclaration
from controller.api.params import ParamType

DECLARATION = DriverDeclaration(
    name="xend",
    driver="controller.backends.xend.driver:XendDriver",
    summary="Xen's HTTP API (xend, up to Xen 4.4), as the 2007 proposal's driver used it",
    uri_schemes=("xend+http", "http", "xend+unix"),
    uri_example="xend+http://host-a:8000",
    params={
        "xen.port": ParamType(int, 0, 65535),  # the relocation port; 0 is the destination's default
        "xen.resource": ParamType(int, 0, unit="Mbps"),
    },
)
