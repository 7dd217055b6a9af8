"""
Validating admission webhooks in the emulated API server, called over real HTTPS as kube-apiserver calls them.

The webhook servers here are real: a threaded ``http.server`` with a certificate (IP SAN 127.0.0.1) signed
by a throwaway CA, which the ValidatingWebhookConfiguration names in ``caBundle``.
"""

import asyncio
import http.server
import json
import socket
import ssl
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import aiohttp.web
import pytest

from .emulator import CEL_AVAILABLE, AdmissionError, ApiError, ApiServer
from .emulator.certs import Certificates, make_certificates
from .emulator.webhookconfigs import validating_webhook, validating_webhook_configuration, webhook_rule
from .test_emulator import MERGE, TOYS, read_events, toy

GROUP = "example.domig.dev"
Reply = dict[str, Any] | tuple[int, str, bytes]


def allow(review: dict[str, Any], *, warnings: list[str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": review["request"]["uid"], "allowed": True}
    if warnings:
        response["warnings"] = warnings
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}


def deny(review: dict[str, Any], status: dict[str, Any] | None = None, **response: Any) -> dict[str, Any]:
    body = {"uid": review["request"]["uid"], "allowed": False, **response}
    if status is not None:
        body["status"] = status
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": body}


class WebhookServer:
    """A real HTTPS server in a thread; each path answers with a test-given function of the AdmissionReview."""

    def __init__(self, certs: Certificates) -> None:
        self.routes: dict[str, Callable[[dict[str, Any]], Reply]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._context = certs.server_context()
        self._server: http.server.ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}{path}"

    def reviews(self, path: str) -> list[dict[str, Any]]:
        return [review for p, review in list(self.calls) if p.partition("?")[0] == path]

    def __enter__(self) -> "WebhookServer":
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = self.path.partition("?")[0]
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.calls.append((self.path, review))
                route = outer.routes.get(path)
                reply = route(review) if route else (404, "text/plain", b"no such webhook")
                status, ctype, body = reply if isinstance(reply, tuple) else (200, "application/json", b"")
                if isinstance(reply, dict):
                    body = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request: Any, client_address: Any) -> None:
                # The TLS handshake in the connection's thread, so that a failing one blocks no other.
                try:
                    tls = outer._context.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # e.g. the client refused our certificate
                super().finish_request(tls, client_address)

            def handle_error(self, request: Any, client_address: Any) -> None:
                if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError):  # e.g. gone after a timeout
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="webhooks", daemon=True).start()
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def certs() -> Certificates:
    return make_certificates(ca_name="webhooks test CA")


@pytest.fixture(scope="module")
def server_module(certs: Certificates) -> Iterator[WebhookServer]:
    with WebhookServer(certs) as server:
        yield server


@pytest.fixture()
def server(server_module: WebhookServer) -> WebhookServer:
    server_module.routes.clear()
    server_module.calls.clear()
    return server_module


@pytest.fixture()
async def client(kube: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(kube.server_url) as session:
        yield session


def hook(name: str, url: str, certs: Certificates, *rules: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    rules = rules or (webhook_rule(["toys"], groups=[GROUP]),)
    return validating_webhook(name, url=url, ca_bundle=certs.ca_pem, rules=rules, **kwargs)


def register(kube: ApiServer, *webhooks: dict[str, Any], name: str = "test") -> None:
    kube.create(validating_webhook_configuration(name, webhooks))


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- allowing, denying, warnings -------------------------------------------------------------------


async def test_an_allowed_creation_is_stored_and_the_review_says_it_all(
    kube: ApiServer, server: WebhookServer, certs: Certificates, client: aiohttp.ClientSession
) -> None:
    server.routes["/toys"] = allow
    register(kube, hook("toys.example.com", server.url("/toys"), certs))
    rsp = await client.post(TOYS, json=toy("t1"))
    assert rsp.status == 201
    assert kube.read("toys", "t1", "default") is not None
    [review] = server.reviews("/toys")
    assert server.calls[0][0] == "/toys?timeout=10s"
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    request = review["request"]
    assert len(request["uid"]) == 36
    assert request["kind"] == request["requestKind"] == {"group": GROUP, "version": "v1", "kind": "Toy"}
    assert request["resource"] == request["requestResource"] == {"group": GROUP, "version": "v1", "resource": "toys"}
    assert "subResource" not in request
    assert (request["name"], request["namespace"], request["operation"]) == ("t1", "default", "CREATE")
    assert request["userInfo"]["username"] == "kubernetes-admin"
    assert request["dryRun"] is False and request["oldObject"] is None
    assert request["options"] == {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
    obj = request["object"]  # as it will be stored: defaulted, with server-set metadata, but no version yet
    assert obj["apiVersion"] == f"{GROUP}/v1" and obj["spec"]["replicas"] == 1
    assert obj["metadata"]["uid"] and obj["metadata"]["namespace"] == "default"
    assert "resourceVersion" not in obj["metadata"]
    assert kube.read("toys", "t1", "default")["metadata"]["uid"] == obj["metadata"]["uid"]  # type: ignore[index]


@pytest.mark.parametrize(
    "status, code, reason, message",
    [
        ({"code": 403, "reason": "Forbidden", "message": "no toys on Sundays"}, 403, "Forbidden", "no toys on Sundays"),
        ({"message": "no toys on Sundays"}, 400, None, "no toys on Sundays"),
        ({"code": 200, "reason": "NotToday"}, 400, "NotToday", "NotToday"),
        (None, 400, None, None),
    ],
)
async def test_a_denial_is_refused_in_kubes_words_and_nothing_is_stored(
    kube: ApiServer,
    server: WebhookServer,
    certs: Certificates,
    client: aiohttp.ClientSession,
    status: dict[str, Any] | None,
    code: int,
    reason: str | None,
    message: str | None,
) -> None:
    server.routes["/toys"] = lambda review: (
        deny(review, status) if review["request"]["name"] == "bad" else allow(review)
    )
    register(kube, hook("toys.example.com", server.url("/toys"), certs))
    expected = 'admission webhook "toys.example.com" denied the request' + (
        f": {message}" if message else " without explanation"
    )
    watch = await client.get("/apis/example.domig.dev/v1/toys?watch=true")

    rsp = await client.post(TOYS, json=toy("bad"))
    assert rsp.status == code
    body = await rsp.json()
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["message"] == expected and body["code"] == code and body.get("reason") == reason
    with pytest.raises(ApiError) as err:
        kube.create(toy("bad"))
    assert (err.value.status, err.value.message) == (code, expected)
    assert kube.read("toys", "bad", "default") is None

    kube.create(toy("good"))
    [event] = await read_events(watch, 1)  # the denied creations made no events
    assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "good")
    watch.close()


async def test_warnings_reach_the_client_as_kube_sends_them(
    kube: ApiServer, server: WebhookServer, certs: Certificates, client: aiohttp.ClientSession
) -> None:
    def review(review: dict[str, Any]) -> dict[str, Any]:
        if review["request"]["name"] == "bad":
            return deny(review, {"message": "bad toy"}, warnings=["denied, with a warning"])
        return allow(review, warnings=["toys are fun", 'mind the "quotes"'])

    server.routes["/toys"] = review
    register(kube, hook("toys.example.com", server.url("/toys"), certs))
    rsp = await client.post(TOYS, json=toy("t1", junk=1))
    assert rsp.status == 201
    assert rsp.headers.getall("Warning") == [
        '299 - "unknown field \\"spec.junk\\"", 299 - "toys are fun", 299 - "mind the \\"quotes\\""'
    ]
    rsp = await client.post(TOYS, json=toy("bad"))
    assert rsp.status == 400
    assert rsp.headers.getall("Warning") == ['299 - "denied, with a warning"']
    with pytest.raises(AdmissionError) as err:
        kube.create(toy("bad"))
    assert err.value.warnings == ("denied, with a warning",)


# --- what is sent where: rules, selectors ----------------------------------------------------------


async def test_rules_match_operations_resources_subresources_and_scopes(
    kube: ApiServer, server: WebhookServer, certs: Certificates
) -> None:
    for path in ("/create", "/status", "/cluster-deletes", "/namespaced-all", "/everything"):
        server.routes[path] = allow
    register(
        kube,
        hook("create.example.com", server.url("/create"), certs, webhook_rule(["toys"], operations=["CREATE"])),
        hook("status.example.com", server.url("/status"), certs, webhook_rule(["toys/status"])),
        hook(
            "cluster-deletes.example.com",
            server.url("/cluster-deletes"),
            certs,
            webhook_rule(["*"], operations=["DELETE"], scope="Cluster"),
        ),
        hook(
            "namespaced.example.com",
            server.url("/namespaced-all"),
            certs,
            webhook_rule(["configmaps"], groups=[""], versions=["v1"], operations=["*"], scope="Namespaced"),
        ),
        hook("everything.example.com", server.url("/everything"), certs, webhook_rule(["*/*"], operations=["*"])),
    )

    def ops(path: str) -> list[tuple[str, str, str]]:
        return [(r["request"]["operation"], r["request"]["resource"]["resource"], r["request"].get("subResource", ""))
                for r in server.reviews(path)]  # fmt: skip

    kube.create(toy("t1"))
    kube.patch_object("toys", "t1", {"spec": {"replicas": 2}}, "default")
    kube.patch_object("toys", "t1", {"status": {"phase": "X"}}, "default", subresource="status")
    kube.delete_object("toys", "t1", "default")
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "p"}})
    kube.delete_object("clusterkopfpeerings", "p")
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
    kube.delete_object("configmaps", "cm", "default")

    assert ops("/create") == [("CREATE", "toys", "")]
    assert ops("/status") == [("UPDATE", "toys", "status")]  # the main resource's rule does not cover it
    assert ops("/cluster-deletes") == [("DELETE", "clusterkopfpeerings", "")]
    assert ops("/namespaced-all") == [("CREATE", "configmaps", ""), ("DELETE", "configmaps", "")]
    assert ops("/everything") == [
        ("CREATE", "toys", ""),
        ("UPDATE", "toys", ""),
        ("UPDATE", "toys", "status"),
        ("DELETE", "toys", ""),
        ("CREATE", "clusterkopfpeerings", ""),
        ("DELETE", "clusterkopfpeerings", ""),
        ("CREATE", "configmaps", ""),
        ("DELETE", "configmaps", ""),
    ]


async def test_namespace_and_object_selectors(kube: ApiServer, server: WebhookServer, certs: Certificates) -> None:
    server.routes["/prod"] = server.routes["/web"] = server.routes["/named"] = allow
    register(
        kube,
        hook("prod.example.com", server.url("/prod"), certs, namespace_selector={"matchLabels": {"env": "prod"}}),
        hook(
            "named.example.com",
            server.url("/named"),
            certs,
            namespace_selector={
                "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["default"]}]
            },
        ),
        hook(
            "web.example.com",
            server.url("/web"),
            certs,
            object_selector={"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]},
        ),
    )
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "prod", "labels": {"env": "prod"}}})
    kube.create({**toy("p1"), "metadata": {"name": "p1", "namespace": "prod"}})
    kube.create({**toy("d1"), "metadata": {"name": "d1", "labels": {"tier": "web"}}})
    kube.create({**toy("d2"), "metadata": {"name": "d2", "labels": {"tier": "db"}}})
    kube.patch_object("toys", "d1", {"metadata": {"labels": {"tier": None}}}, "default")  # the old object matches
    kube.patch_object("toys", "d1", {"spec": {"replicas": 3}}, "default")  # neither matches

    def names(path: str) -> list[str]:
        return [f"{r['request']['operation']} {r['request']['namespace']}/{r['request']['name']}"
                for r in server.reviews(path)]  # fmt: skip

    assert names("/prod") == ["CREATE prod/p1"]
    assert names("/named") == ["CREATE default/d1", "CREATE default/d2", "UPDATE default/d1", "UPDATE default/d1"]
    assert names("/web") == ["CREATE default/d1", "UPDATE default/d1"]


@pytest.mark.skipif(not CEL_AVAILABLE, reason="CEL needs the common-expression-language package")
@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_match_conditions(kube: ApiServer, server: WebhookServer, certs: Certificates, policy: str) -> None:
    server.routes["/toys"] = allow
    conditions = [
        {"name": "not-a-dry-run", "expression": "!request.dryRun"},
        {"name": "only-big", "expression": "object.spec.replicas > 1"},
        {"name": "explicitly-big", "expression": "object.spec.extra.big"},  # a missing key is an error
    ]
    register(
        kube,
        hook("big.example.com", server.url("/toys"), certs, failure_policy=policy, match_conditions=conditions),
    )
    kube.create(toy("small"))  # a false condition skips the webhook, whatever the errors
    kube.create(toy("huge", replicas=5, extra={"big": True}))
    assert [r["request"]["name"] for r in server.reviews("/toys")] == ["huge"]
    if policy == "Ignore":
        kube.create(toy("big", replicas=5))  # the error skips the webhook
        assert len(server.reviews("/toys")) == 1
        return
    with pytest.raises(ApiError) as err:
        kube.create(toy("big", replicas=5))
    assert err.value.status == 403 and err.value.reason == "Forbidden"
    assert err.value.message == (
        'toys.example.domig.dev "big" is forbidden: '
        "expression 'object.spec.extra.big' resulted in error: no such key: extra"
    )


def test_match_conditions_are_validated(kube: ApiServer, certs: Certificates) -> None:
    conditions = [{"name": "a", "expression": "true"}, {"name": "a", "expression": " "}]
    with pytest.raises(ApiError) as err:
        register(kube, hook("big.example.com", "https://127.0.0.1/x", certs, match_conditions=conditions))
    assert err.value.message == (
        'ValidatingWebhookConfiguration.admissionregistration.k8s.io "test" is invalid: ['
        "webhooks[0].matchConditions[1].expression: Required value, "
        'webhooks[0].matchConditions[1].name: Duplicate value: "a"]'
    )


# --- failures: failurePolicy, TLS, timeouts, bad answers ----------------------------------------------


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_failure_policy_with_a_dead_url(
    kube: ApiServer, certs: Certificates, client: aiohttp.ClientSession, policy: str
) -> None:
    port = dead_port()
    register(kube, hook("dead.example.com", f"https://127.0.0.1:{port}/validate", certs, failure_policy=policy))
    rsp = await client.post(TOYS, json=toy("t1"))
    if policy == "Ignore":
        assert rsp.status == 201 and kube.read("toys", "t1", "default") is not None
        return
    error = (
        f'failed calling webhook "dead.example.com": failed to call webhook: '
        f'Post "https://127.0.0.1:{port}/validate?timeout=10s": dial tcp 127.0.0.1:{port}: connect: connection refused'
    )
    assert rsp.status == 500
    assert await rsp.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {error}",
        "reason": "InternalError",
        "details": {"causes": [{"message": error}]},
        "code": 500,
    }
    assert kube.read("toys", "t1", "default") is None
    assert kube.server_errors == []  # a faithful 500, not an emulator failure


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_failure_policy_with_a_wrong_ca_bundle(
    kube: ApiServer, server: WebhookServer, client: aiohttp.ClientSession, policy: str
) -> None:
    server.routes["/toys"] = allow
    other = make_certificates(ca_name="another CA")
    register(kube, hook("tls.example.com", server.url("/toys"), other, failure_policy=policy))
    rsp = await client.post(TOYS, json=toy("t1"))
    if policy == "Ignore":
        assert rsp.status == 201
        return
    assert rsp.status == 500
    assert (await rsp.json())["message"] == (
        f'Internal error occurred: failed calling webhook "tls.example.com": failed to call webhook: '
        f'Post "{server.url("/toys")}?timeout=10s": tls: failed to verify certificate: '
        f"x509: certificate signed by unknown authority"
    )
    assert server.reviews("/toys") == []


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
async def test_a_slow_webhook_times_out(
    kube: ApiServer, server: WebhookServer, certs: Certificates, client: aiohttp.ClientSession, policy: str
) -> None:
    server.routes["/slow"] = lambda review: (time.sleep(2.5), allow(review))[1]
    register(kube, hook("slow.example.com", server.url("/slow"), certs, timeout_seconds=1, failure_policy=policy))
    started = time.monotonic()
    rsp = await client.post(TOYS, json=toy("t1"))
    assert 1.0 <= time.monotonic() - started < 2.0
    assert server.calls[0][0] == "/slow?timeout=1s"
    if policy == "Ignore":
        assert rsp.status == 201
        return
    assert rsp.status == 500
    assert (await rsp.json())["message"].endswith(
        f'failed to call webhook: Post "{server.url("/slow")}?timeout=1s": context deadline exceeded'
    )


@pytest.mark.parametrize(
    "reply, error",
    [
        (lambda r: {**allow(r), "response": {"uid": "wrong", "allowed": True}},
         'received invalid webhook response: expected response.uid="{uid}", got "wrong"'),
        (lambda r: {"response": allow(r)["response"]},
         "received invalid webhook response: expected webhook response of admission.k8s.io/v1, "
         "Kind=AdmissionReview, got /, Kind="),
        (lambda r: {**allow(r), "response": None}, "received invalid webhook response: webhook response was absent"),
        (lambda r: (200, "application/json", b"<html>oops</html>"),
         "failed to call webhook: couldn't get version/kind; json parse error: "
         "invalid character '<' looking for beginning of value"),
        (lambda r: (500, "text/plain", b"boom"),
         'failed to call webhook: an error on the server ("boom") has prevented the request from succeeding'),
    ],
)  # fmt: skip
async def test_bad_answers_are_call_failures(
    kube: ApiServer,
    server: WebhookServer,
    certs: Certificates,
    client: aiohttp.ClientSession,
    reply: Callable[[dict[str, Any]], Reply],
    error: str,
) -> None:
    server.routes["/toys"] = reply
    register(kube, hook("bad.example.com", server.url("/toys"), certs))
    rsp = await client.post(TOYS, json=toy("t1"))
    assert rsp.status == 500
    uid = server.reviews("/toys")[0]["request"]["uid"]
    expected = 'Internal error occurred: failed calling webhook "bad.example.com": ' + error.format(uid=uid)
    assert (await rsp.json())["message"] == expected


async def test_the_first_known_review_version_is_sent(
    kube: ApiServer, server: WebhookServer, certs: Certificates
) -> None:
    server.routes["/old"] = lambda review: {"response": {"allowed": True}}  # v1beta1 answers were never checked
    register(kube, hook("old.example.com", server.url("/old"), certs, admission_review_versions=["v1beta1", "v1"]))
    kube.create(toy("t1"))
    assert [r["apiVersion"] for r in server.reviews("/old")] == ["admission.k8s.io/v1beta1"]


async def test_services_cannot_be_reached_so_failure_policy_decides(kube: ApiServer, certs: Certificates) -> None:
    service = {"namespace": "default", "name": "webhook", "path": "/validate"}
    for policy in ("Fail", "Ignore"):
        vwc = validating_webhook(
            f"{policy.lower()}.example.com",
            service=service,
            ca_bundle=certs.ca_pem,
            rules=[webhook_rule(["configmaps"], groups=[""])],
            failure_policy=policy,
        )
        register(kube, vwc, name=policy.lower())
    with pytest.raises(ApiError) as err:
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
    assert err.value.status == 500
    assert err.value.message == (
        'Internal error occurred: failed calling webhook "fail.example.com": failed to call webhook: '
        'Post "https://webhook.default.svc:443/validate?timeout=10s": service "webhook" not found'
    )
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook"}})
    with pytest.raises(ApiError) as err:
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})
    assert str(err.value.message).endswith('no endpoints available for service "webhook"')
    kube.delete_object("validatingwebhookconfigurations", "fail")
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})  # Ignore lets it through


# --- what the webhooks are told: dry runs, updates, deletions -----------------------------------------


async def test_dry_runs_are_admitted_with_the_dry_run_flag(
    kube: ApiServer, server: WebhookServer, certs: Certificates, client: aiohttp.ClientSession
) -> None:
    server.routes["/toys"] = lambda r: deny(r, {"message": "no"}) if r["request"]["name"] == "bad" else allow(r)
    register(kube, hook("toys.example.com", server.url("/toys"), certs))
    rsp = await client.post(f"{TOYS}?dryRun=All&fieldManager=tests", json=toy("t1"))
    assert rsp.status == 201 and kube.read("toys", "t1", "default") is None
    request = server.reviews("/toys")[0]["request"]
    assert request["dryRun"] is True
    assert request["options"] == {
        "apiVersion": "meta.k8s.io/v1",
        "kind": "CreateOptions",
        "dryRun": ["All"],
        "fieldManager": "tests",
    }
    rsp = await client.post(f"{TOYS}?dryRun=All", json=toy("bad"))
    assert rsp.status == 400  # a dry run is denied as the real request would be


async def test_updates_and_deletions_get_the_old_object(
    kube: ApiServer, server: WebhookServer, certs: Certificates, client: aiohttp.ClientSession
) -> None:
    server.routes["/toys"] = allow
    rules = webhook_rule(["toys"], groups=[GROUP], operations=["UPDATE", "DELETE"])
    register(kube, hook("toys.example.com", server.url("/toys"), certs, rules))
    kube.create(toy("t1"))
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 2}}, headers=MERGE)
    assert rsp.status == 200
    rsp = await client.delete(f"{TOYS}/t1")
    assert rsp.status == 200
    update, delete = (r["request"] for r in server.reviews("/toys"))
    assert update["operation"] == "UPDATE" and update["options"]["kind"] == "UpdateOptions"
    assert update["oldObject"]["spec"]["replicas"] == 1 and update["object"]["spec"]["replicas"] == 2
    assert update["object"]["metadata"]["generation"] == 2  # as it will be stored
    assert delete["operation"] == "DELETE" and delete["options"]["kind"] == "DeleteOptions"
    assert delete["object"] is None and delete["oldObject"]["spec"]["replicas"] == 2


async def test_a_denied_update_changes_nothing(kube: ApiServer, server: WebhookServer, certs: Certificates) -> None:
    server.routes["/toys"] = lambda r: (
        deny(r, {"message": "frozen"}) if r["request"]["operation"] == "UPDATE" else allow(r)
    )
    register(kube, hook("toys.example.com", server.url("/toys"), certs))
    created = kube.create(toy("t1"))
    with pytest.raises(ApiError) as err:
        kube.patch_object("toys", "t1", {"spec": {"replicas": 2}}, "default")
    assert err.value.message == 'admission webhook "toys.example.com" denied the request: frozen'
    assert kube.read("toys", "t1", "default") == created


# --- webhooks that use the API, and the emulator's own concurrency ---------------------------------------


async def test_a_webhook_can_read_the_api_during_the_call(
    kube: ApiServer, server: WebhookServer, certs: Certificates
) -> None:
    def unique_vm(review: dict[str, Any]) -> dict[str, Any]:
        with urllib.request.urlopen(f"{kube.server_url}{TOYS}", timeout=5) as rsp:  # over HTTP, like kopf
            listing = json.load(rsp)
        vm = review["request"]["object"]["spec"]["vmName"]
        taken = [t["metadata"]["name"] for t in listing["items"] if t["spec"]["vmName"] == vm]
        return deny(review, {"message": f"vmName {vm} is taken by {taken[0]}"}) if taken else allow(review)

    server.routes["/toys"] = unique_vm
    register(
        kube, hook("unique.example.com", server.url("/toys"), certs, webhook_rule(["toys"], operations=["CREATE"]))
    )
    kube.create(toy("t1"))
    with pytest.raises(ApiError) as err:
        kube.create(toy("t2"))
    assert err.value.message == 'admission webhook "unique.example.com" denied the request: vmName vm1 is taken by t1'
    kube.create(toy("t3", vmName="vm3"))


async def test_async_accessors_with_a_webhook_in_the_callers_loop(kube: ApiServer, certs: Certificates) -> None:
    async def validate(request: aiohttp.web.Request) -> aiohttp.web.Response:
        review = await request.json()
        async with aiohttp.ClientSession(kube.server_url) as session:  # the API, from the same loop
            existing = await (await session.get(TOYS)).json()
        return aiohttp.web.json_response(allow(review, warnings=[f"{len(existing['items'])} toys before"]))

    app = aiohttp.web.Application()
    app.router.add_post("/validate", validate)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await aiohttp.web.SockSite(runner, sock, ssl_context=certs.server_context()).start()
    try:
        register(kube, hook("inloop.example.com", f"https://127.0.0.1:{port}/validate", certs, timeout_seconds=1))
        await kube.acreate(toy("t1"))
        await kube.aapply(toy("t1", replicas=2))
        assert kube.read("toys", "t1", "default")["spec"]["replicas"] == 2  # type: ignore[index]
        # The sync accessor blocks this loop, so the webhook cannot answer: a timeout, not a deadlock.
        started = time.monotonic()
        with pytest.raises(ApiError) as err:
            kube.create(toy("t2"))
        assert "context deadline exceeded" in str(err.value.message) and time.monotonic() - started < 3
    finally:
        await runner.cleanup()


async def test_the_emulator_serves_others_while_a_webhook_thinks(
    kube: ApiServer, server: WebhookServer, certs: Certificates, client: aiohttp.ClientSession
) -> None:
    release = threading.Event()
    server.routes["/toys"] = lambda review: (release.wait(5), allow(review))[1]
    register(kube, hook("toys.example.com", server.url("/toys"), certs, webhook_rule(["toys"], operations=["CREATE"])))
    creation = asyncio.create_task(client.post(TOYS, json=toy("t1")))
    await asyncio.sleep(0.3)
    assert not creation.done()
    rsp = await client.get(TOYS)  # served meanwhile; the pending object is not visible
    assert rsp.status == 200 and (await rsp.json())["items"] == []
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}})  # writes too
    release.set()
    assert (await creation).status == 201


async def test_a_change_during_admission_readmits_the_update(
    kube: ApiServer, server: WebhookServer, certs: Certificates, client: aiohttp.ClientSession
) -> None:
    first = threading.Event()
    release = threading.Event()

    def slow_first(review: dict[str, Any]) -> dict[str, Any]:
        if not first.is_set():
            first.set()
            release.wait(5)
        return allow(review)

    server.routes["/toys"] = slow_first
    kube.create(toy("t1"))
    register(kube, hook("toys.example.com", server.url("/toys"), certs, webhook_rule(["toys"], operations=["UPDATE"])))
    patch = asyncio.create_task(client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 3}}, headers=MERGE))
    await asyncio.to_thread(first.wait, 5)
    kube.patch_object("toys", "t1", {"metadata": {"labels": {"meanwhile": "yes"}}}, "default")
    release.set()
    rsp = await patch
    assert rsp.status == 200
    obj = kube.read("toys", "t1", "default")
    assert obj is not None and obj["spec"]["replicas"] == 3 and obj["metadata"]["labels"] == {"meanwhile": "yes"}
    olds = [r["request"]["oldObject"]["metadata"].get("labels") for r in server.reviews("/toys")]
    assert olds == [None, None, {"meanwhile": "yes"}]  # the slow one, the labelling, the slow one again


# --- the configurations themselves -------------------------------------------------------------------


async def test_configurations_are_defaulted_validated_and_never_admitted(
    kube: ApiServer, server: WebhookServer, certs: Certificates
) -> None:
    server.routes["/all"] = lambda review: deny(review, {"message": "nothing passes"})
    everything = webhook_rule(["*/*"], operations=["*"])
    register(kube, hook("all.example.com", server.url("/all"), certs, everything))
    stored = kube.read("validatingwebhookconfigurations", "test")
    assert stored is not None
    defaults = {k: stored["webhooks"][0][k] for k in ("failurePolicy", "matchPolicy", "timeoutSeconds")}
    assert defaults == {"failurePolicy": "Fail", "matchPolicy": "Equivalent", "timeoutSeconds": 10}
    assert stored["webhooks"][0]["namespaceSelector"] == stored["webhooks"][0]["objectSelector"] == {}

    bad = validating_webhook(
        "short.name", url="http://127.0.0.1/x", rules=[everything], side_effects="Some", timeout_seconds=31
    )
    bad["admissionReviewVersions"] = ["v2"]
    with pytest.raises(ApiError) as err:
        register(kube, bad, name="bad")  # not admitted by the deny-all webhook: refused by validation
    assert err.value.status == 422
    assert err.value.message == (
        'ValidatingWebhookConfiguration.admissionregistration.k8s.io "bad" is invalid: ['
        'webhooks[0].name: Invalid value: "short.name": should be a domain with at least three segments '
        "separated by dots, "
        'webhooks[0].sideEffects: Unsupported value: "Some": supported values: "None", "NoneOnDryRun", '
        "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds, "
        "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; "
        "desired format: https://host[/path], "
        'webhooks[0].admissionReviewVersions: Invalid value: []string{"v2"}: must include at least one of v1, v1beta1]'
    )
    with pytest.raises(ApiError) as err:
        kube.create(toy("t1"))
    assert err.value.message == 'admission webhook "all.example.com" denied the request: nothing passes'
    kube.delete_object("validatingwebhookconfigurations", "test")  # the deny-all webhook is not asked
    kube.create(toy("t1"))
    assert len(server.reviews("/all")) == 1
