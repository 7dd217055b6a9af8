"""
Validating admission webhooks, called as kube-apiserver's ``ValidatingAdmissionWebhook`` plugin calls them.

Which webhooks a request goes to (rules, namespaceSelector, objectSelector), the ``admission.k8s.io/v1``
AdmissionReview sent to each (over HTTPS, verified against the webhook's ``caBundle``), and what their answers
mean: a denial becomes the API error kube returns, a failed call obeys ``failurePolicy``, warnings are passed on.
The messages are kube's (``pkg/admission/plugin/webhook/{validating,errors,request}``), and the call errors
are worded as Go's HTTP client words them, where Python's errors allow telling them apart.

The server part (which objects, when, under which lock) is in :mod:`.admitting`.
Not emulated: ``matchPolicy: Equivalent`` conversions (there are none to make), and ``authorizer`` in CEL.
"""

import asyncio
import base64
import binascii
import dataclasses
import errno
import json
import logging
import os
import ssl
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp
import attrs

from .cel import CEL_AVAILABLE, _cel_program
from .errors import AdmissionError
from .selectors import label_selector_predicate
from .typedefs import Body

logger = logging.getLogger(__name__)

# Who the requests come from: the emulator has one user, kubeadm's admin.
USER_INFO: Body = {"username": "kubernetes-admin", "groups": ["kubeadm:cluster-admins", "system:authenticated"]}


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What kube's admission.Attributes tell a webhook about a request."""

    operation: str  # CREATE, UPDATE, DELETE (CONNECT: the emulator serves no connect subresources)
    group: str
    version: str
    resource: str  # the plural
    kind: str
    subresource: str  # "" or "status"
    namespace: str  # "" for cluster-scoped objects; a namespace's own name for namespaces
    name: str  # as requested: "" for creations by generateName
    obj: Body | None  # the object as it would be stored; None for deletions
    old: Body | None  # the stored object; None for creations
    dry_run: bool
    options: Body  # CreateOptions, UpdateOptions, DeleteOptions
    namespaced: bool  # is the resource namespaced (vs. cluster-scoped)?


@dataclasses.dataclass(frozen=True)
class Hook:
    """One webhook of one configuration, to be called for a request."""

    config: str
    spec: Body  # the defaulted entry of ``webhooks``
    unreachable: str | None = None  # why a ``clientConfig.service`` cannot be dialled (the emulator has no pods)


# -- matching ---------------------------------------------------------------------------------------


def matching_hooks(
    configs: Iterable[Body], attrs_: Attributes, namespace_labels: Mapping[str, str] | None
) -> list[Hook]:
    """The webhooks to call, in the order of configuration names, then as listed (as kube sorts them)."""
    hooks: list[Hook] = []
    for config in sorted(configs, key=lambda c: str(c["metadata"]["name"])):
        for spec in config.get("webhooks") or []:
            if (
                _rules_match(spec, attrs_)
                and _namespace_matches(spec, attrs_, namespace_labels)
                and _object_matches(spec, attrs_)
                and _conditions_match(spec, attrs_)
            ):
                hooks.append(Hook(config=config["metadata"]["name"], spec=spec))
    return hooks


def _rules_match(spec: Body, a: Attributes) -> bool:
    return any(_rule_matches(rule, a) for rule in spec.get("rules") or [])


def _rule_matches(rule: Body, a: Attributes) -> bool:
    def exact_or_wildcard(items: Sequence[str], requested: str) -> bool:
        return "*" in items or requested in items

    scope = rule.get("scope") or "*"
    is_namespace = (a.group, a.resource) == ("", "namespaces")
    if scope == "Namespaced" and (is_namespace or not a.namespaced):
        return False
    if scope == "Cluster" and not (is_namespace or not a.namespaced):
        return False
    if not exact_or_wildcard(rule.get("operations") or [], a.operation):
        return False
    if not exact_or_wildcard(rule.get("apiGroups") or [], a.group):
        return False
    if not exact_or_wildcard(rule.get("apiVersions") or [], a.version):
        return False
    for resource in rule.get("resources") or []:
        res, _, sub = resource.partition("/")
        if res in ("*", a.resource) and sub in ("*", a.subresource):
            return True
    return False


def _namespace_matches(spec: Body, a: Attributes, namespace_labels: Mapping[str, str] | None) -> bool:
    selector = spec.get("namespaceSelector") or {}
    if not a.namespaced and a.resource != "namespaces":
        return True  # cluster-scoped objects (but namespaces) are never exempted, as in kube
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    return label_selector_predicate(selector)({"metadata": {"labels": dict(namespace_labels or {})}})


def _object_matches(spec: Body, a: Attributes) -> bool:
    selector = spec.get("objectSelector") or {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return True
    predicate = label_selector_predicate(selector)
    return any(obj is not None and predicate(obj) for obj in (a.obj, a.old))


def _conditions_match(spec: Body, a: Attributes) -> bool:
    """
    The ``matchConditions`` (CEL; GA in 1.30): any false skips the webhook; errors obey failurePolicy.

    Without the CEL package, they are not evaluated and the webhook is called (as for CRDs' rules).
    The variables are ``object``, ``oldObject``, ``request``; ``authorizer`` is not available here.
    """
    conditions = spec.get("matchConditions") or []
    if not conditions or not CEL_AVAILABLE:
        return True
    context = {"object": a.obj, "oldObject": a.old, "request": review(a, "", "v1")["request"]}
    errors: list[str] = []
    for condition in conditions:
        expression = str(condition.get("expression"))
        try:
            result = _cel_program(expression).execute(context)
        except Exception as e:  # the CEL package raises assorted errors
            detail = f"no such key: {e.args[0]}" if isinstance(e, KeyError) else str(e)
            errors.append(f"expression '{expression}' resulted in error: {detail}")
            continue
        if result is False:
            return False  # a false condition skips the webhook, whatever the errors
        if result is not True:
            errors.append(f"expression '{expression}' resulted in error: must evaluate to bool")
    if not errors or spec.get("failurePolicy") == "Ignore":
        return not errors
    error = errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"  # utilerrors.NewAggregate
    group_resource = f"{a.resource}.{a.group}" if a.group else a.resource
    subject = f"{group_resource} {json.dumps(a.name)}" if a.name else group_resource
    logger.warning("Failed evaluating match conditions, failing closed %s: %s", spec.get("name"), error)
    raise AdmissionError(
        status=403,
        reason="Forbidden",
        message=f"{subject} is forbidden: {error}",
        details={"name": a.name, "group": a.group, "kind": a.resource},
    )


# -- the review -------------------------------------------------------------------------------------


def review(a: Attributes, uid: str, version: str) -> Body:
    """The AdmissionReview request, as CreateV1AdmissionReview builds it (v1beta1 has the same shape)."""
    gvk = {"group": a.group, "version": a.version, "kind": a.kind}
    gvr = {"group": a.group, "version": a.version, "resource": a.resource}
    request: Body = {"uid": uid, "kind": gvk, "resource": gvr}
    if a.subresource:
        request["subResource"] = a.subresource
    request["requestKind"], request["requestResource"] = dict(gvk), dict(gvr)
    if a.subresource:
        request["requestSubResource"] = a.subresource
    if a.name:
        request["name"] = a.name
    if a.namespace:
        request["namespace"] = a.namespace
    request.update(
        {
            "operation": a.operation,
            "userInfo": USER_INFO,
            "object": a.obj,
            "oldObject": a.old,
            "dryRun": a.dry_run,
            "options": a.options,
        }
    )
    return {"kind": "AdmissionReview", "apiVersion": f"admission.k8s.io/{version}", "request": request}


# -- the calls --------------------------------------------------------------------------------------


class _CallFailed(Exception):
    """A call that produced no verdict (kube's ErrCallingWebhook): failurePolicy decides."""


@dataclasses.dataclass
class _Verdict:
    warnings: list[str] = dataclasses.field(default_factory=list)
    denial: AdmissionError | None = None
    failure: str | None = None  # the whole ErrCallingWebhook message


async def dispatch(hooks: Sequence[Hook], a: Attributes) -> list[str]:
    """
    Call the webhooks (in parallel, as kube does) and return their warnings, or raise the first error.

    The first error in the webhooks' order wins (kube reports whichever comes first, non-deterministically).
    """
    verdicts = await asyncio.gather(*(_call(hook, a) for hook in hooks))
    warnings = [w for v in verdicts for w in v.warnings]
    for hook, verdict in zip(hooks, verdicts, strict=True):
        name = hook.spec.get("name")
        if verdict.failure is not None:
            if hook.spec.get("failurePolicy") == "Ignore":
                logger.warning("Failed calling webhook, failing open %s: %s", name, verdict.failure)
                continue
            logger.warning("Failed calling webhook, failing closed %s: %s", name, verdict.failure)
            raise AdmissionError(
                status=500,
                reason="InternalError",
                message=f"Internal error occurred: {verdict.failure}",
                details={"causes": [{"message": verdict.failure}]},
                warnings=tuple(warnings),
            )
        if verdict.denial is not None:
            logger.info("rejected by webhook %r: %s", name, verdict.denial.message)
            raise attrs.evolve(verdict.denial, warnings=tuple(warnings))
    return warnings


async def _call(hook: Hook, a: Attributes) -> _Verdict:
    spec = hook.spec
    name = spec.get("name")
    version = next((v for v in spec.get("admissionReviewVersions") or [] if v in ("v1", "v1beta1")), "v1")
    uid = str(uuid.uuid4())
    timeout = int(spec.get("timeoutSeconds") or 10)
    url = call_url(spec.get("clientConfig") or {}, timeout)
    try:
        context = _ssl_context((spec.get("clientConfig") or {}).get("caBundle"))
        if hook.unreachable is not None:
            raise _CallFailed(f'failed to call webhook: Post "{url}": {hook.unreachable}')
        payload = json.dumps(review(a, uid, version)).encode()
        status, content_type, body = await _post(url, payload, context, timeout)
        result = _verify(_decode(status, content_type, body), uid, version)
    except _CallFailed as e:
        return _Verdict(failure=f'failed calling webhook "{name}": {e}')
    warnings = [str(w) for w in result.get("warnings") or []]
    if result.get("allowed") is True:
        return _Verdict(warnings=warnings)
    return _Verdict(warnings=warnings, denial=_denial(str(name), result.get("status")))


def call_url(client: Body, timeout: int) -> str:
    """The URL kube posts to, with the ``?timeout=`` it adds for the backend."""
    if client.get("service"):
        svc = client["service"]
        base, path = f"https://{svc['name']}.{svc['namespace']}.svc:{svc.get('port', 443)}", svc.get("path") or ""
    else:
        parts = urllib.parse.urlsplit(str(client.get("url")))
        base, path = f"{parts.scheme}://{parts.netloc}", parts.path
    clean = "/" + "/".join(p for p in path.split("/") if p)  # Go's path.Join("/", path)
    return f"{base}{clean}?timeout={timeout}s"


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    if not ca_bundle:
        return ssl.create_default_context()  # the system's roots, as kube does without a caBundle
    try:
        pem = base64.b64decode(ca_bundle).decode("ascii")
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError(pem)
        return ssl.create_default_context(cadata=pem)
    except (binascii.Error, UnicodeDecodeError, ValueError, ssl.SSLError) as e:
        raise _CallFailed("could not get REST client: unable to load root certificates: "
                          "unable to parse bytes as PEM block") from e  # fmt: skip


async def _post(url: str, payload: bytes, context: ssl.SSLContext, timeout: int) -> tuple[int, str, bytes]:
    prefix = f'failed to call webhook: Post "{url}": '
    host = urllib.parse.urlsplit(url).hostname or ""
    port = urllib.parse.urlsplit(url).port or 443
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
    try:
        async with asyncio.timeout(timeout), aiohttp.ClientSession() as session:
            async with session.post(url, data=payload, headers=headers, ssl=context) as rsp:
                return rsp.status, rsp.content_type, await rsp.read()
    except TimeoutError as e:
        raise _CallFailed(prefix + "context deadline exceeded") from e
    except aiohttp.ClientConnectorCertificateError as e:
        raise _CallFailed(prefix + "tls: failed to verify certificate: " + _x509(e.certificate_error)) from e
    except aiohttp.ClientSSLError as e:
        raise _CallFailed(prefix + _tls_failure(e)) from e
    except aiohttp.ClientConnectorDNSError as e:
        raise _CallFailed(prefix + f"dial tcp: lookup {host}: no such host") from e
    except aiohttp.ClientConnectorError as e:
        code = e.os_error.errno or errno.ECONNREFUSED
        raise _CallFailed(prefix + f"dial tcp {address}: connect: {os.strerror(code).lower()}") from e
    except aiohttp.ServerDisconnectedError as e:
        raise _CallFailed(prefix + "EOF") from e
    except aiohttp.ClientError as e:
        raise _CallFailed(prefix + str(e)) from e


def _x509(error: BaseException) -> str:
    code = getattr(error, "verify_code", None)
    if code in (2, 18, 19, 20, 21):  # no/unknown issuer, self-signed: Go's wording for all of them
        return "x509: certificate signed by unknown authority"
    return f"x509: {getattr(error, 'verify_message', None) or error}"  # Python's wording (Go's needs the cert)


def _tls_failure(error: aiohttp.ClientSSLError) -> str:
    text = str(error)
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text:  # a plain-HTTP server
        return "http: server gave HTTP response to HTTPS client"
    return text  # Python's wording: other handshake failures have no one-to-one Go message


def _decode(status: int, content_type: str, body: bytes) -> Any:
    if not 200 <= status <= 206:
        raise _CallFailed("failed to call webhook: " + _unsuccessful(status, content_type, body))
    if not body:
        raise _CallFailed(
            f"failed to call webhook: 0-length response with status code: {status} and content type: {content_type}"
        )
    try:
        return json.loads(body)
    except ValueError as e:
        text = body.decode("utf-8", errors="replace").lstrip()
        detail = (
            f"invalid character {text[0]!r} looking for beginning of value"
            if text and text[0] not in '{["-0123456789tfn'
            else "unexpected end of JSON input"
            if isinstance(e, json.JSONDecodeError) and e.pos >= len(body.rstrip())
            else str(e)
        )
        raise _CallFailed(f"failed to call webhook: couldn't get version/kind; json parse error: {detail}") from e


_GENERIC_MESSAGES = {
    400: "the server rejected our request for an unknown reason",
    401: "the server has asked for the client to provide credentials",
    404: "the server could not find the requested resource",
    405: "the server does not allow this method on the requested resource",
    409: "the server reported a conflict",
    422: "the server rejected our request due to an error in our request",
    429: "the server has received too many requests and has asked us to try again later",
    504: "the server was unable to return a response in the time allotted, but may still be processing the request",
}


def _unsuccessful(status: int, content_type: str, body: bytes) -> str:
    """client-go's error for a non-2xx response: the Status's message, or NewGenericServerResponse's text."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("kind") == "Status" and parsed.get("message"):
        return str(parsed["message"])
    text = body[:1024].decode("utf-8", errors="replace").strip() if content_type == "text/plain" else "unknown"
    if status in (403, 406, 415):
        return text
    if status in _GENERIC_MESSAGES:
        return _GENERIC_MESSAGES[status]
    if status >= 500:
        return f"an error on the server ({json.dumps(text)}) has prevented the request from succeeding"
    return f"the server responded with the status code {status} but did not return more information"


def _verify(review_: Any, uid: str, version: str) -> Body:
    """VerifyAdmissionResponse: the response's presence, uid, kind, and no patches from validating webhooks."""
    if not isinstance(review_, dict):
        raise _CallFailed(
            f"failed to call webhook: json: cannot unmarshal {_json_kind(review_)} into Go value of type "
            f"{version}.AdmissionReview"
        )
    response = review_.get("response")
    if not isinstance(response, dict):
        raise _CallFailed("received invalid webhook response: webhook response was absent")
    allowed = response.get("allowed", False)
    if not isinstance(allowed, bool):
        raise _CallFailed(
            f"failed to call webhook: json: cannot unmarshal {_json_kind(allowed)} into Go struct field "
            f"AdmissionResponse.response.allowed of type bool"
        )
    if version == "v1beta1":
        return response  # v1beta1 responses were never checked for uid & kind
    got_uid = response.get("uid") or ""
    if got_uid != uid:
        raise _CallFailed(f"received invalid webhook response: expected response.uid={json.dumps(uid)}, "
                          f"got {json.dumps(got_uid)}")  # fmt: skip
    api_version, kind = str(review_.get("apiVersion") or ""), str(review_.get("kind") or "")
    group, _, ver = api_version.rpartition("/")
    if (group, ver, kind) != ("admission.k8s.io", "v1", "AdmissionReview"):
        raise _CallFailed(
            "received invalid webhook response: expected webhook response of admission.k8s.io/v1, "
            f"Kind=AdmissionReview, got {group}/{ver}, Kind={kind}"
        )
    if response.get("patch"):
        raise _CallFailed("received invalid webhook response: validating webhook may not return response.patch")
    if response.get("patchType") is not None:
        raise _CallFailed("received invalid webhook response: validating webhook may not return response.patchType")
    return response


def _json_kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "bool", type(None): "null"}.get(type(value), "number")


def _denial(name: str, status: Any) -> AdmissionError:
    """ToStatusErr: the webhook's Status, with kube's prefix, and never a code under 400."""
    status = status if isinstance(status, dict) else {}
    code = status.get("code")
    code = code if isinstance(code, int) and code >= 400 else 400
    message, reason = str(status.get("message") or ""), str(status.get("reason") or "")
    denied = f"admission webhook {json.dumps(name)} denied the request"
    text = f"{denied}: {message}" if message else f"{denied}: {reason}" if reason else f"{denied} without explanation"
    details = status.get("details") if isinstance(status.get("details"), dict) else None
    return AdmissionError(status=code, reason=reason, message=text, details=details)
