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
For faults as a real API server has them, at random and seeded (500s, conflicts that a concurrent
writer really causes, watch streams cut mid-stream, 410 on resumed watches), and for one-shot actions
on cue (kill a client as it makes a given write), see :mod:`.faults` (``ApiServer(faults=...)``,
``api.tripwires``): opt-in, nothing happens without them.

Validating admission webhooks are called as kube-apiserver calls them: every write (CREATE, UPDATE incl.
patches and -- if a rule lists ``res/status`` -- status writes, DELETE; dry runs with ``dryRun: true``) is
defaulted & validated, then POSTed as an ``admission.k8s.io/v1`` AdmissionReview over HTTPS to the matching
webhooks of all ValidatingWebhookConfigurations, before it is stored. Denials, failed calls (``failurePolicy``),
timeouts and warnings come back to the client in kube's words; the direct accessors raise them as ApiError.
The webhook may read the API meanwhile (no lock is held during the calls)::

    certs = make_certificates()  # from .certs: a CA & a server cert with IP SANs (needs `cryptography`)
    api.create(validating_webhook_configuration('domig', [
        validating_webhook('check.domig.dev', url=f'https://127.0.0.1:{port}/validate', ca_bundle=certs.ca_pem,
                           rules=[webhook_rule(['domainmigrations'], groups=['domig.dev'])]),
    ]))

``matchConditions`` are evaluated with the CEL package, as CRDs' rules are (``authorizer`` excepted).
Not emulated: mutating webhooks (their configurations are only stored & validated), ``matchPolicy``
conversions, and admission of the emulator's own cascading deletions (of a namespace's or a CRD's objects).
The sync accessors block their thread during the calls: with a webhook served in the caller's event loop
(e.g. kopf's, in a ``KopfOperator`` without ``thread=True``), use the async twins (``acreate``, ``aapply``, ...).

The modules:

* :mod:`.server` -- :class:`ApiServer`: the lifecycle, kubeconfigs, the user-side access; its mixins:
  :mod:`.handler` (HTTP parsing & error rendering), :mod:`.serving` (the resource requests),
  :mod:`.reading` & :mod:`.writing` (the state), :mod:`.admitting` (webhooks between a write's candidate
  and its commit), :mod:`.watching`, :mod:`.discovery`.
* :mod:`.admission` -- webhook matching, AdmissionReviews, the HTTPS calls & their verdicts;
  :mod:`.webhookconfigs` -- webhook configurations (defaults, validation, builders); :mod:`.certs` -- test TLS.
* :mod:`.resources` -- resource definitions (built-ins & CRDs); :mod:`.documents` -- YAML sources.
* :mod:`.schema` -- pruning, defaulting, validation; :mod:`.cel` -- CEL rules; :mod:`.structural` --
  the schema checks at CRD registration (``uniqueItems``, ``additionalProperties``, rules' ``fieldPath``).
* :mod:`.patching` -- merge- & JSON-patches; :mod:`.selectors` -- label & field selectors.
* :mod:`.faults` -- opt-in fault injection (random & seeded) and tripwires;
* :mod:`.errors` -- K8s-like errors; :mod:`.typedefs` -- shared aliases; :mod:`.query` -- parsed requests.
* :mod:`.runners` -- kopf against the emulator: :class:`KopfOperator`, :class:`KopfSubprocess`.
"""

from .cel import CEL_AVAILABLE
from .documents import FIXTURES, PEERING_CRDS, CrdSource
from .errors import AdmissionError, ApiError, FieldCause
from .faults import Faults, InjectedError, Tripwire
from .patching import PatchError, json_patch, merge_patch
from .resources import ResourceDef, VersionDef
from .runners import HandlersSource, KopfOperator, KopfSubprocess, fast_settings, load_handlers
from .schema import prune_and_default, validate
from .selectors import Predicate, parse_field_selector, parse_label_selector
from .server import ApiServer
from .typedefs import Body
from .webhookconfigs import validating_webhook, validating_webhook_configuration, webhook_rule

__all__ = [
    "CEL_AVAILABLE",
    "FIXTURES",
    "PEERING_CRDS",
    "AdmissionError",
    "ApiError",
    "ApiServer",
    "Body",
    "CrdSource",
    "Faults",
    "FieldCause",
    "HandlersSource",
    "InjectedError",
    "KopfOperator",
    "KopfSubprocess",
    "PatchError",
    "Predicate",
    "ResourceDef",
    "Tripwire",
    "VersionDef",
    "fast_settings",
    "json_patch",
    "load_handlers",
    "merge_patch",
    "parse_field_selector",
    "parse_label_selector",
    "prune_and_default",
    "validate",
    "validating_webhook",
    "validating_webhook_configuration",
    "webhook_rule",
]
