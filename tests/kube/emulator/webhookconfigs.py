"""
Admission webhook configurations: defaulting & validation as kube-apiserver does, and builders for tests.

Kube validates ``ValidatingWebhookConfiguration`` (and ``MutatingWebhookConfiguration``) objects on writes
with the messages of ``pkg/apis/admissionregistration/validation``; the subset here covers what a test can
get wrong: names, rules, policies, timeouts, selectors, client configs, review versions. Builders::

    vwc = validating_webhook_configuration('domig', [
        validating_webhook('check.domig.dev', url='https://127.0.0.1:8443/validate', ca_bundle=ca_pem,
                           rules=[webhook_rule(['domainmigrations'], groups=['domig.dev'])]),
    ])
    api.create(vwc)
"""

import base64
import binascii
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

from .cel import CEL_AVAILABLE, _cel_program
from .errors import FieldCause, _bad_request, _go_repr
from .typedefs import Body

VWC_GP = ("admissionregistration.k8s.io", "validatingwebhookconfigurations")
MWC_GP = ("admissionregistration.k8s.io", "mutatingwebhookconfigurations")
_WEBHOOK_CONFIG_GPS = (VWC_GP, MWC_GP)

_OPERATIONS = ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]  # sorted, as kube lists the supported values
_SCOPES = ["*", "Cluster", "Namespaced"]
_FAILURE_POLICIES = ["Fail", "Ignore"]
_MATCH_POLICIES = ["Equivalent", "Exact"]
_SIDE_EFFECTS = ["None", "NoneOnDryRun"]  # v1 accepts only these (Unknown/Some were v1beta1's)
_REINVOCATION_POLICIES = ["IfNeeded", "Never"]
_REVIEW_VERSIONS = ["v1", "v1beta1"]
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_DNS1035_LABEL_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def webhook_rule(
    resources: Sequence[str],
    *,
    groups: Sequence[str] = ("*",),
    versions: Sequence[str] = ("*",),
    operations: Sequence[str] = ("CREATE", "UPDATE"),
    scope: str = "*",
) -> Body:
    """One of ``rules``: resources like ``domainmigrations``, ``domainmigrations/status``, ``*``, ``*/*``."""
    return {
        "apiGroups": list(groups),
        "apiVersions": list(versions),
        "resources": list(resources),
        "operations": list(operations),
        "scope": scope,
    }


def validating_webhook(
    name: str,
    *,
    url: str | None = None,
    service: Mapping[str, Any] | None = None,
    ca_bundle: bytes | str | None = None,
    rules: Sequence[Body] = (),
    failure_policy: str | None = None,
    timeout_seconds: int | None = None,
    side_effects: str = "None",
    namespace_selector: Mapping[str, Any] | None = None,
    object_selector: Mapping[str, Any] | None = None,
    admission_review_versions: Sequence[str] = ("v1",),
    match_conditions: Sequence[Mapping[str, str]] | None = None,
) -> Body:
    """One webhook of a configuration; ``ca_bundle`` is the PEM text of the CA (base64-encoded here)."""
    client: Body = {}
    if url is not None:
        client["url"] = url
    if service is not None:
        client["service"] = dict(service)
    if ca_bundle is not None:
        pem = ca_bundle.encode() if isinstance(ca_bundle, str) else ca_bundle
        client["caBundle"] = base64.b64encode(pem).decode()
    hook: Body = {
        "name": name,
        "clientConfig": client,
        "rules": [dict(r) for r in rules],
        "sideEffects": side_effects,
        "admissionReviewVersions": list(admission_review_versions),
    }
    optional = {
        "failurePolicy": failure_policy,
        "timeoutSeconds": timeout_seconds,
        "namespaceSelector": namespace_selector,
        "objectSelector": object_selector,
        "matchConditions": None if match_conditions is None else [dict(c) for c in match_conditions],
    }
    hook.update({k: v for k, v in optional.items() if v is not None})
    return hook


def validating_webhook_configuration(name: str, webhooks: Sequence[Body], **labels: str) -> Body:
    """A whole ``ValidatingWebhookConfiguration`` document, ready for ``api.create()``."""
    meta: Body = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": meta,
        "webhooks": [dict(w) for w in webhooks],
    }


def default_webhook_configuration(body: Body, *, mutating: bool, kind: str) -> None:
    """The defaults of admissionregistration/v1, in place (kube stores & shows them)."""

    def objects(value: Any, what: str) -> list[Body]:
        # Wrong shapes fail kube's decoding of the body (400), before any validation (422).
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise _bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {what} must be objects')
        return value

    for hook in objects(body.get("webhooks"), "webhooks"):
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        if mutating:
            hook.setdefault("reinvocationPolicy", "Never")
        for rule in objects(hook.get("rules"), "rules"):
            rule.setdefault("scope", "*")
        [client] = objects([hook.setdefault("clientConfig", {})], "clientConfig")
        if client.get("service") is not None:
            [service] = objects([client["service"]], "clientConfig.service")
            service.setdefault("port", 443)
        if client.get("caBundle") is not None:
            _check_base64(client["caBundle"], kind)


def _check_base64(value: Any, kind: str) -> None:
    # A []byte field: kube fails to decode the request body at all (400), not to validate it (422).
    prefix = f'{kind} in version "v1" cannot be handled as a {kind}: '
    if not isinstance(value, str):
        raise _bad_request(prefix + f"json: cannot unmarshal {type(value).__name__} into Go value of type []uint8")
    bad = next((i for i, c in enumerate(value) if not (c.isascii() and (c.isalnum() or c in "+/="))), None)
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        position = bad if bad is not None else len(value)
        raise _bad_request(prefix + f"illegal base64 data at input byte {position}") from None


def validate_webhook_configuration(body: Body, *, mutating: bool) -> list[FieldCause]:
    """As ValidateValidatingWebhookConfiguration (or the mutating one) does, for the defaulted body."""
    causes: list[FieldCause] = []
    seen: set[str] = set()
    for i, hook in enumerate(body.get("webhooks") or []):
        path = f"webhooks[{i}]"
        causes.extend(_validate_hook(hook, path, mutating=mutating))
        causes.extend(_validate_review_versions(hook.get("admissionReviewVersions"), f"{path}.admissionReviewVersions"))
        name = hook.get("name")
        if name:
            if name in seen:
                causes.append(FieldCause("FieldValueDuplicate", f"{path}.name", f"Duplicate value: {_go_repr(name)}"))
            seen.add(name)
    return causes


def _required(path: str, detail: str = "") -> FieldCause:
    return FieldCause("FieldValueRequired", path, f"Required value: {detail}" if detail else "Required value")


def _invalid(path: str, value: Any, detail: str) -> FieldCause:
    return FieldCause("FieldValueInvalid", path, f"Invalid value: {value}: {detail}")


def _not_supported(path: str, value: Any, supported: Sequence[str]) -> FieldCause:
    values = ", ".join(_go_repr(v) for v in supported)
    return FieldCause(
        "FieldValueNotSupported", path, f"Unsupported value: {_go_repr(value)}: supported values: {values}"
    )


def _go_slice(go_type: str, values: Sequence[Any]) -> str:
    """How kube's field errors print a slice value (Go's %#v), e.g. ``[]string{"*", "x"}``."""
    return go_type + "{" + ", ".join(_go_repr(v) for v in values) + "}"


def _validate_hook(hook: Body, path: str, *, mutating: bool) -> list[FieldCause]:
    causes: list[FieldCause] = []
    name = hook.get("name") or ""
    if not name:
        causes.append(_required(f"{path}.name"))
    elif not _DNS1123_SUBDOMAIN_RE.fullmatch(name) or len(name) > 253:
        causes.append(
            _invalid(
                f"{path}.name",
                _go_repr(name),
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )
        )
    elif len(name.split(".")) < 3:
        causes.append(
            _invalid(
                f"{path}.name", _go_repr(name), "should be a domain with at least three segments separated by dots"
            )
        )
    for j, rule in enumerate(hook.get("rules") or []):
        causes.extend(_validate_rule(rule, f"{path}.rules[{j}]"))
    for field, supported in [("failurePolicy", _FAILURE_POLICIES), ("matchPolicy", _MATCH_POLICIES)]:
        if hook.get(field) not in supported:
            causes.append(_not_supported(f"{path}.{field}", hook.get(field), supported))
    if "sideEffects" not in hook or hook["sideEffects"] is None:
        causes.append(_required(f"{path}.sideEffects", "must specify one of " + ", ".join(_SIDE_EFFECTS)))
    elif hook["sideEffects"] not in _SIDE_EFFECTS:
        causes.append(_not_supported(f"{path}.sideEffects", hook["sideEffects"], _SIDE_EFFECTS))
    timeout = hook.get("timeoutSeconds")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= 30:
        causes.append(
            _invalid(f"{path}.timeoutSeconds", _go_repr(timeout), "the timeout value must be between 1 and 30 seconds")
        )
    for field in ("namespaceSelector", "objectSelector"):
        causes.extend(_validate_selector(hook.get(field) or {}, f"{path}.{field}"))
    if mutating and hook.get("reinvocationPolicy") not in _REINVOCATION_POLICIES:
        causes.append(
            _not_supported(f"{path}.reinvocationPolicy", hook.get("reinvocationPolicy"), _REINVOCATION_POLICIES)
        )
    causes.extend(_validate_client(hook.get("clientConfig") or {}, f"{path}.clientConfig"))
    causes.extend(_validate_conditions(hook.get("matchConditions") or [], f"{path}.matchConditions"))
    return causes


def _validate_conditions(conditions: Sequence[Any], path: str) -> list[FieldCause]:
    causes: list[FieldCause] = []
    if len(conditions) > 64:
        causes.append(FieldCause("FieldValueTooMany", path, f"Too many: {len(conditions)}: must have at most 64 items"))
    names: set[str] = set()
    for k, condition in enumerate(conditions):
        at = f"{path}[{k}]"
        condition = condition if isinstance(condition, dict) else {}
        expression = str(condition.get("expression") or "").strip()
        if not expression:
            causes.append(_required(f"{at}.expression"))
        elif CEL_AVAILABLE:
            try:
                _cel_program(expression)
            except Exception as e:  # the CEL package raises assorted errors
                causes.append(_invalid(f"{at}.expression", _go_repr(expression), f"compilation failed: {e}"))
        name = condition.get("name")
        if not name:
            causes.append(_required(f"{at}.name"))
        elif name in names:
            causes.append(FieldCause("FieldValueDuplicate", f"{at}.name", f"Duplicate value: {_go_repr(name)}"))
        else:
            names.add(name)
    return causes


def _validate_rule(rule: Body, path: str) -> list[FieldCause]:
    causes: list[FieldCause] = []
    operations = rule.get("operations") or []
    if not operations:
        causes.append(_required(f"{path}.operations"))
    if len(operations) > 1 and "*" in operations:
        causes.append(
            _invalid(
                f"{path}.operations",
                _go_slice("[]admissionregistration.OperationType", operations),
                "if '*' is present, must not specify other operations",
            )
        )
    for k, op in enumerate(operations):
        if op not in _OPERATIONS:
            causes.append(_not_supported(f"{path}.operations[{k}]", op, _OPERATIONS))
    for field, what in [("apiGroups", "API groups"), ("apiVersions", "API versions")]:
        values = rule.get(field) or []
        if not values:
            causes.append(_required(f"{path}.{field}"))
        if len(values) > 1 and "*" in values:
            causes.append(
                _invalid(
                    f"{path}.{field}",
                    _go_slice("[]string", values),
                    f"if '*' is present, must not specify other {what}",
                )
            )
    for k, version in enumerate(rule.get("apiVersions") or []):
        if version == "":
            causes.append(_required(f"{path}.apiVersions[{k}]"))
    resources = rule.get("resources") or []
    if not resources:
        causes.append(_required(f"{path}.resources"))
    for k, resource in enumerate(resources):
        if resource == "":
            causes.append(_required(f"{path}.resources[{k}]"))
    if len(resources) > 1 and "*/*" in resources:
        causes.append(
            _invalid(
                f"{path}.resources",
                _go_slice("[]string", resources),
                "if '*/*' is present, must not specify other resources",
            )
        )
    if rule.get("scope") not in _SCOPES:
        causes.append(_not_supported(f"{path}.scope", rule.get("scope"), _SCOPES))
    return causes


def _validate_selector(selector: Body, path: str) -> list[FieldCause]:
    causes: list[FieldCause] = []
    for k, req in enumerate(selector.get("matchExpressions") or []):
        at = f"{path}.matchExpressions[{k}]"
        op, values = req.get("operator"), req.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                causes.append(_required(f"{at}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                causes.append(
                    FieldCause(
                        "FieldValueForbidden",
                        f"{at}.values",
                        "Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            causes.append(_invalid(f"{at}.operator", _go_repr(op), "not a valid selector operator"))
    return causes


def _validate_client(client: Body, path: str) -> list[FieldCause]:
    url, service = client.get("url"), client.get("service")
    if (url is None) == (service is None):
        return [_required(path, "exactly one of url or service is required")]
    causes: list[FieldCause] = []
    if url is not None:
        form = "; desired format: https://host[/path]"
        at = f"{path}.url"
        parts = urllib.parse.urlsplit(str(url))
        if parts.scheme != "https":
            causes.append(_invalid(at, _go_repr(parts.scheme), "'https' is the only allowed URL scheme" + form))
        if not parts.netloc.rpartition("@")[2]:
            causes.append(_invalid(at, '""', "host must be provided" + form))
        if "@" in parts.netloc:
            causes.append(
                _invalid(at, _go_repr(parts.netloc.rpartition("@")[0]), "user information is not permitted in the URL")
            )
        if parts.fragment:
            causes.append(_invalid(at, _go_repr(parts.fragment), "fragments are not permitted in the URL"))
        if parts.query:
            causes.append(_invalid(at, _go_repr(parts.query), "query parameters are not permitted in the URL"))
    else:
        at = f"{path}.service"
        assert isinstance(service, dict)  # by default_webhook_configuration()
        if not service.get("name"):
            causes.append(_required(f"{at}.name", "service name is required"))
        if not service.get("namespace"):
            causes.append(_required(f"{at}.namespace", "service namespace is required"))
        port = service.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            causes.append(
                _invalid(f"{at}.port", _go_repr(port), "port is not valid: must be between 1 and 65535, inclusive")
            )
    return causes


def _validate_review_versions(versions: Any, path: str) -> list[FieldCause]:
    if not versions:
        return [_required(path, "must specify one of " + ", ".join(_REVIEW_VERSIONS))]
    causes: list[FieldCause] = []
    seen: set[str] = set()
    for i, version in enumerate(versions):
        if version in seen:
            causes.append(_invalid(f"{path}[{i}]", _go_repr(version), "duplicate version"))
            continue
        seen.add(version)
        if not _DNS1035_LABEL_RE.fullmatch(str(version)):
            causes.append(
                _invalid(
                    f"{path}[{i}]",
                    _go_repr(version),
                    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                    "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                )
            )
    if not seen & set(_REVIEW_VERSIONS):
        causes.append(
            _invalid(
                path, _go_slice("[]string", versions), "must include at least one of " + ", ".join(_REVIEW_VERSIONS)
            )
        )
    return causes
