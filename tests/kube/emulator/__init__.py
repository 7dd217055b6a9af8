"""
An emulated Kubernetes API server for operator tests, built on top of ``kmock``.

``kmock.KubernetesEmulator`` (0.8) is a good skeleton, but too naive for kopf 1.45: no resource
versions, no uids/timestamps/generations, no 409/422 semantics, no PUT, no ``generateName``,
no status subresource, no selectors, no schemas, and a few parsing/serving quirks. This package
keeps kmock's parts that work (the aiohttp server, the request log, the DSL of reactions
for fault injection, error rendering, the discovery endpoints, the object store with history)
and replaces the request-serving logic of the resources with a realistic one.

Usage (sync or async tests alike; the server runs in its own thread and event loop)::

    with ApiServer(crds=['tests/kube/fixtures/crd.yaml']) as api:
        api.create({'apiVersion': 'kopf.dev/v1', 'kind': 'KopfExample', ...})
        obj = api.read('kopfexamples', 'name', 'default')
        api.kubeconfig  # a path to a kubeconfig file for `kopf run` & co.

Fault injection uses kmock's DSL, e.g. ``api['patch', kmock.resource('kopf.dev/v1/kopfexamples')] << 500``.
Such user reactions take precedence over the emulated behaviour and do not change the state.

The modules:

* :mod:`.server` -- :class:`ApiServer`: the lifecycle, kubeconfigs, the user-side access; its mixins:
  :mod:`.handler` (HTTP parsing & error rendering), :mod:`.serving` (the resource requests),
  :mod:`.reading` & :mod:`.writing` (the state), :mod:`.watching`, :mod:`.discovery`.
* :mod:`.resources` -- resource definitions (built-ins & CRDs); :mod:`.documents` -- YAML sources.
* :mod:`.schema` -- pruning, defaulting, validation; :mod:`.cel` -- CEL rules.
* :mod:`.patching` -- merge- & JSON-patches; :mod:`.selectors` -- label & field selectors.
* :mod:`.errors` -- K8s-like errors; :mod:`.typedefs` -- shared aliases; :mod:`.query` -- parsed requests.
* :mod:`.runners` -- kopf against the emulator: :class:`KopfOperator`, :class:`KopfSubprocess`.
"""

from .cel import CEL_AVAILABLE
from .documents import FIXTURES, PEERING_CRDS, CrdSource
from .errors import ApiError, FieldCause
from .patching import PatchError, json_patch, merge_patch
from .resources import ResourceDef, VersionDef
from .runners import HandlersSource, KopfOperator, KopfSubprocess, fast_settings, load_handlers
from .schema import prune_and_default, validate
from .selectors import Predicate, parse_field_selector, parse_label_selector
from .server import ApiServer
from .typedefs import Body

__all__ = [
    "CEL_AVAILABLE",
    "FIXTURES",
    "PEERING_CRDS",
    "ApiError",
    "ApiServer",
    "Body",
    "CrdSource",
    "FieldCause",
    "HandlersSource",
    "KopfOperator",
    "KopfSubprocess",
    "PatchError",
    "Predicate",
    "ResourceDef",
    "VersionDef",
    "fast_settings",
    "json_patch",
    "load_handlers",
    "merge_patch",
    "parse_field_selector",
    "parse_label_selector",
    "prune_and_default",
    "validate",
]
