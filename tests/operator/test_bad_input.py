"""Bad input, a thousand times: generated documents through every door a user has.

Each document (tests/api/strategies.py: drawn from the model's schema, a quarter valid, the rest
broken in one to three ways) goes to `domig validate` (in-process, and a few as a real process),
to the emulated API server as `kubectl apply` sends it (POST with fieldValidation=Strict: the
structural schema and the rulebook's CEL), and to the admission webhook the operator serves (an
AdmissionReview over HTTPS, as kube-apiserver sends it). Each is accepted or refused with a
message naming a field, never a traceback or a 500; and the three agree:

- what `domig validate` refuses is refused at apply time too (by the CRD or the webhook), and what
  the CRD and the webhook both let through validates (the rulebook is one book);
- where they legitimately differ: `domig validate` reads `status` (the API server drops it on
  create: it is the status subresource's), and the webhook checks the live hosts (a flag a
  host's driver lacks, a namespace it does not allow), which `domig validate` without --hosts
  cannot know.

Then the operator runs a sample of accepted documents against test-driver hosts: each ends in a
phase with a reason, and nothing in the operator's log is a traceback.

Fixed profile (derandomized, no database): the same documents in CI every time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from controller.api.base import Model
from controller.api.crds import domain_migration_crd, hypervisor_host_crd, migration_policy_crd
from controller.api.errors import SpecError
from controller.api.hypervisor_host import HypervisorHost
from controller.api.migration_policy import MigrationPolicy
from controller.api.resource import DomainMigration
from controller.cli.documents import load_policies_file
from controller.cli.main import main as domig_main
from tests.api.strategies import DOMAINS, HOSTS, document, documents, spec_schema
from tests.api.violations import all_violations
from tests.kube.emulator import ApiError, ApiServer, KopfOperator
from tests.operator.conftest import CRDS, FAST, HANDLERS, ROOT, host

# hypothesis warns when the global `random` moves while it draws: here the emulator's and kopf's
# threads move it (generated names, backoff jitter), not the strategies, which use only hypothesis.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
PROFILE = settings(
    derandomize=True,
    # No shrinking: a failure is reported as drawn (shrinking re-runs hundreds of documents
    # through a stateful API server, minutes for one failure).
    phases=[Phase.explicit, Phase.generate],
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
MIGRATIONS, HOST_DOCS, POLICIES, RUNS = 700, 150, 150, 40  # 1,040 documents in all
PLURAL = {
    "DomainMigration": "domainmigrations",
    "HypervisorHost": "hypervisorhosts",
    "MigrationPolicy": "migrationpolicies",
}
HANDLER = {"DomainMigration": "migrations", "HypervisorHost": "hosts", "MigrationPolicy": "policies"}
MODEL: dict[str, type[Model]] = {
    "DomainMigration": DomainMigration,
    "HypervisorHost": HypervisorHost,
    "MigrationPolicy": MigrationPolicy,
}
# A field, as every refuser names it: from the document's root (`spec.params[xen.port]`).
FIELD = re.compile(r"^(spec|metadata|status|apiVersion|kind)\b")
PROBLEMS = re.compile(r"; (?=(?:spec|metadata|status|apiVersion|kind)\b)")
TERMINAL = {"Succeeded", "Failed", "Aborted"}
ROOT_SCHEMA = {
    kind: make()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for kind, make in (
        ("DomainMigration", domain_migration_crd),
        ("HypervisorHost", hypervisor_host_crd),
        ("MigrationPolicy", migration_policy_crd),
    )
}


@dataclass
class Answer:
    accepted: bool
    fields: list[str] = field(default_factory=list)  # the fields the refusal names
    said: str = ""
    stored: dict[str, Any] | None = None  # what the API server kept: what it sends the webhook


def model_answer(kind: str, doc: Any) -> Answer:
    try:
        MODEL[kind].parse(doc)
    except SpecError as exc:
        return Answer(False, [p.split(": ", 1)[0] for p in exc.problems], "; ".join(exc.problems))
    return Answer(True)


# ---- the three doors ---------------------------------------------------------------------------


def cli_answer(kind: str, doc: Any, workdir: Path) -> Answer:
    """`domig validate` in-process (its main: argument parsing, reading the file, the report)."""
    path = workdir / f"{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    if kind == "DomainMigration":
        argv = ["validate", "-f", str(path)]
    elif kind == "HypervisorHost":
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        usable = isinstance(name, str) and len(name) <= 253 and re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name)
        source = name if usable else "x"
        # Standalone, a host's Secret comes in the hosts file: give it the one its ref names.
        ref = (doc.get("spec") or {}).get("credentialsSecretRef") if isinstance(doc.get("spec"), dict) else None
        if isinstance(ref, dict) and isinstance(ref.get("name"), str):
            namespace = ref.get("namespace") if isinstance(ref.get("namespace"), str) else None
            secret = {"apiVersion": "v1", "kind": "Secret", "stringData": {"username": "u", "password": "p"},
                      "metadata": {"name": ref["name"], "namespace": namespace or "default"}}  # fmt: skip
            path.write_text(yaml.safe_dump_all([doc, secret], allow_unicode=True))
        migration = workdir / f"{uuid.uuid4().hex}-m.yaml"
        migration.write_text(yaml.safe_dump(_migration_from(source)))
        argv = ["validate", "-f", str(migration), "--hosts", str(path)]
    else:  # no `domig validate` for policies: `domig migrate --policies` reads them with this
        try:
            load_policies_file(path)
        except SpecError as exc:
            return Answer(False, [p.split(": ", 2)[1] for p in exc.problems], "; ".join(exc.problems))
        return Answer(True)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = domig_main(argv)
    lines = err.getvalue().splitlines()
    if code == 0:
        assert not lines and "valid DomainMigration" in out.getvalue(), (out.getvalue(), lines)
        return Answer(True)
    assert code == 2, (code, lines)
    assert lines, "refused without a word"
    prefix = f"domig: invalid: {path}"
    fields = []
    for line in lines:
        assert line.startswith(prefix), line
        rest = line[len(prefix) :].lstrip(": ")
        rest = re.sub(r"^\(document \d+\): ", "", rest)
        fields.append(rest.split(": ", 1)[0])
    return Answer(False, fields, "\n".join(lines))


def _migration_from(source: str) -> dict[str, Any]:
    return {
        "apiVersion": "domig.dev/v1alpha1",
        "kind": "DomainMigration",
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"domain": "web", "source": source},
    }


def kubectl_namespace_refusal(namespace: str) -> str | None:
    """client-go refuses a namespace that cannot be one segment of the URL's path before any request
    (rest.Request.Namespace, IsValidPathSegmentName): what kubectl says, or None."""
    msgs = [f"may not be '{namespace}'"] if namespace in (".", "..") else []
    msgs += [f"may not contain '{c}'" for c in "/%" if c in namespace]
    return f"invalid namespace {json.dumps(namespace)}: [{' '.join(msgs)}]" if msgs else None


def api_answer(api: ApiServer, kind: str, doc: Any, http: requests.Session) -> Answer:
    """POSTed as `kubectl apply` sends it: JSON, fieldValidation=Strict (kubectl's default)."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    given_ns = meta.get("namespace")
    namespace = given_ns if isinstance(given_ns, str) and given_ns else "default"
    if kind == "DomainMigration" and (refusal := kubectl_namespace_refusal(namespace)):
        return Answer(False, ["metadata.namespace"], refusal)  # kubectl never sends it
    where = f"namespaces/{namespace}/" if kind == "DomainMigration" else ""
    url = f"{api.server_url}/apis/domig.dev/v1alpha1/{where}{PLURAL[kind]}"
    answer = http.post(url, params={"fieldValidation": "Strict"}, json=doc, timeout=30)
    assert answer.status_code < 500, answer.text
    body = answer.json()
    if answer.status_code == 201:
        api.delete_object(PLURAL[kind], body["metadata"]["name"], body["metadata"].get("namespace"))
        return Answer(True, stored=body)
    message = str(body.get("message", ""))
    if answer.status_code == 422:
        fields = [str(c.get("field", "")) for c in (body.get("details") or {}).get("causes", [])]
        assert fields and all(fields), body
        return Answer(False, fields, message)
    if answer.status_code == 404:  # kube's own words: namespaces "x" not found
        assert message == f"namespaces {json.dumps(namespace)} not found", body
        return Answer(False, ["metadata.namespace"], message)
    assert answer.status_code == 400, body
    # kube's own words for a body it cannot decode: they name the field (`unknown field "spec.x"`,
    # metadata.labels) or the kind.
    said = {"the namespace of the provided object": "metadata.namespace", "the API version in": "apiVersion"}
    found = (
        re.findall(r'unknown field "([^"]+)"', message)
        or [field for words, field in said.items() if words in message]
        or re.findall(r"\b(metadata(?:\.\w+)*|apiVersion|kind)\b", message)
    )
    assert found, message
    return Answer(False, found, message)


@dataclass
class Webhook:
    config: dict[str, Any]
    ca: str  # a file with the CA bundle

    def url(self, handler: str) -> str:
        return next(
            h["clientConfig"]["url"] for h in self.config["webhooks"] if h["clientConfig"]["url"].endswith(handler)
        )


def webhook_answer(hook: Webhook, kind: str, doc: Any, http: requests.Session) -> Answer:
    """One AdmissionReview, as kube-apiserver sends it; the document as given."""
    uid = str(uuid.uuid4())
    # kube decodes metadata as an ObjectMeta before any admission (a body it cannot decode never
    # reaches a webhook; kopf itself reads the object's metadata): the rest goes as given.
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    meta = {k: v for k, v in meta.items() if not (k in ("name", "namespace") and not isinstance(v, str))}
    doc = {**doc, "metadata": meta}
    request = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "domig.dev", "version": "v1alpha1", "kind": kind},
            "resource": {"group": "domig.dev", "version": "v1alpha1", "resource": PLURAL[kind]},
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]},
            "object": doc,
            "oldObject": None,
            "dryRun": False,
        },
    }
    answer = http.post(hook.url(HANDLER[kind]), json=request, verify=hook.ca, timeout=30)
    assert answer.status_code == 200, answer.text
    response = answer.json()["response"]
    assert response["uid"] == uid
    if response["allowed"]:
        return Answer(True)
    status = response.get("status") or {}
    assert status.get("code") == 422, status  # kopf answers 500 for an exception of ours
    # kopf sends the problems as one message, joined by "; ": split only where the next one starts
    # with a field, since a value quoted in a problem may hold "; " itself ("'; DROP TABLE x; --").
    problems = PROBLEMS.split(str(status.get("message", "")))
    return Answer(False, [p.split(": ", 1)[0] for p in problems], str(status.get("message")))


# ---- fixtures ----------------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [f"{r.name}: {r.getMessage()}" for r in self.records if r.exc_info or "Traceback" in r.getMessage()]


@dataclass
class Cluster:
    kube: ApiServer
    hook: Webhook
    world: str
    log: Records


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The operator with its webhook, over test-driver hosts and one xend that does not answer."""
    tmp = tmp_path_factory.mktemp("bad-input")
    world = f"test://{tmp / 'world.json'}"
    records = Records()
    logging.getLogger().addHandler(records)
    with (
        ApiServer(crds=CRDS, namespaces=("default", "kube-system", "prod")) as kube,
        pytest.MonkeyPatch.context() as mp,
    ):
        env = {"KUBECONFIG": str(kube.kubeconfig), **FAST, "DOMIG_WEBHOOK_LISTEN": f"127.0.0.1:{free_port()}"}
        for key, value in env.items():
            mp.setenv(key, value)
        domains = [
            {"name": "web", "memoryMiB": 512},
            {"name": "db", "memoryMiB": 256},
            {"name": "big", "memoryMiB": 4096},
        ]
        for doc in (
            host("host-a", world, domains),
            host("host-b", world, memoryMiB=2048),
            host("host-c", world, allowedNamespaces=["prod"]),
            {"apiVersion": "domig.dev/v1alpha1", "kind": "HypervisorHost", "metadata": {"name": "xen-a"},
             "spec": {"driver": "xend", "uri": f"xend+http://127.0.0.1:{free_port()}"}},
        ):  # fmt: skip
            kube.apply(doc)
        operator = KopfOperator(kube, HANDLERS, thread=True)
        asyncio.run(operator.start())
        try:
            deadline = time.monotonic() + 30
            while True:
                config = kube.read("validatingwebhookconfigurations", "domig.dev")
                if config and len(config.get("webhooks") or []) == 3:
                    break
                assert time.monotonic() < deadline, "the webhook was not registered"
                time.sleep(0.05)
            bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"])
            ca = tmp / "ca.pem"
            ca.write_bytes(bundle)
            time.sleep(1)  # the operator's index of hosts follows its watch
            yield Cluster(kube, Webhook(config, str(ca)), world, records)
        finally:
            asyncio.run(operator.stop())
            logging.getLogger().removeHandler(records)
        assert not kube.server_errors, kube.server_errors


@pytest.fixture(scope="module")
def api() -> Iterator[ApiServer]:
    """The CRDs alone: what the API server itself refuses (no webhook registered)."""
    with ApiServer(crds=CRDS, namespaces=("default", "kube-system", "prod")) as server:
        yield server
        assert not server.server_errors, server.server_errors


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@dataclass
class Tally:
    seen: int = 0
    valid: int = 0  # by `domig validate`
    crd: int = 0
    webhook: int = 0
    differ: dict[str, int] = field(default_factory=dict)

    def note(self, why: str) -> None:
        self.differ[why] = self.differ.get(why, 0) + 1


def _no_nulls(value: Any, schema: dict[str, Any]) -> Any:
    """Nulls pruned where the schema declares the field (an unknown one is refused, null or not)."""
    if isinstance(value, dict):
        props, extra = schema.get("properties") or {}, schema.get("additionalProperties")
        return {
            k: _no_nulls(v, props.get(k) or (extra if isinstance(extra, dict) else {}))
            for k, v in value.items()
            if not (v is None and k in props)  # a map's null entry is kept (and refused) as kube does
        }
    if isinstance(value, list):
        return [_no_nulls(v, schema.get("items") or {}) for v in value]
    return value


def as_kube_reads(kind: str, doc: Any) -> Any:
    """The document as kube reads it for its URL: no status (the status subresource's); a null or
    empty apiVersion, kind or namespace taken from the URL (kube's decoder defaults them from the
    endpoint); a null field dropped (kube prunes nulls where the schema is not nullable)."""
    if not isinstance(doc, dict):
        return doc
    kept = {k: v for k, v in doc.items() if k != "status" and not (k in ("apiVersion", "kind") and v in (None, ""))}
    meta = kept.get("metadata")
    if isinstance(meta, dict):  # an ObjectMeta: a null or empty namespace is unset (the request's)
        kept["metadata"] = {k: v for k, v in meta.items() if v is not None and not (k == "namespace" and v == "")}
    return _no_nulls(kept, ROOT_SCHEMA[kind])


def check_one(
    kind: str, doc: Any, api: ApiServer, cluster: Cluster, http: requests.Session, tally: Tally, tmp: Path
) -> None:
    doc = yaml.safe_load(yaml.safe_dump(doc, allow_unicode=True))  # what a YAML file can say
    model = model_answer(kind, doc)
    cli = cli_answer(kind, doc, tmp)
    crd = api_answer(api, kind, doc, http)
    # kube sends a webhook what it decoded, pruned and validated; what it refused is sent as given
    # (more than a webhook ever sees: it must not fail on it either).
    hook = webhook_answer(cluster.hook, kind, crd.stored or doc, http)
    tally.seen += 1
    tally.valid += cli.accepted
    tally.crd += crd.accepted
    tally.webhook += hook.accepted
    for answer in (model, cli, crd, hook):
        for name in answer.fields:
            top = re.split(r"[.\[]", name, maxsplit=1)[0]
            assert FIELD.match(name) or top in doc or name == "(document)", f"{name!r} names no field: {answer.said}"
    # `domig validate` is the model: the same verdict, the same fields. But a hosts file holds
    # Secrets too: there a document must say its kind.
    if kind == "HypervisorHost" and doc.get("kind") != kind:
        assert not cli.accepted and cli.fields == ["kind"], cli
        tally.note("a hosts file's document without kind HypervisorHost: refused by domig only")
        return
    assert cli.accepted == model.accepted, (cli, model)
    if kind != "MigrationPolicy":
        assert set(cli.fields) == set(model.fields), (cli, model)
    # One rulebook: through the CRD and the webhook means valid to domig (status aside: the API
    # server drops it on create), and what domig refuses is refused at apply time.
    plain = model_answer(kind, as_kube_reads(kind, doc))
    if crd.accepted and hook.accepted:
        assert plain.accepted, f"the CRD and the webhook let through what domig refuses: {plain.said}"
    if not plain.accepted:
        assert not (crd.accepted and hook.accepted), plain
    if model.accepted != plain.accepted:
        tally.note("a status, a null field, a null apiVersion or kind or an empty namespace: refused by domig only")
    if crd.accepted and not hook.accepted:
        tally.note("refused by the webhook only: " + ", ".join(sorted({why(hook.said)})))
    if plain.accepted and not crd.accepted:
        # A namespace that does not exist: domig validate cannot know the cluster's namespaces.
        assert crd.said.startswith("namespaces ") and crd.said.endswith(" not found"), crd.said
        tally.note("a namespace that does not exist: refused by the API server only")


def why(message: str) -> str:
    for word in ("NoSupport", "NamespaceNotAllowed", "PolicyForbids"):
        if word in message:
            return word
    return message


def drawn(strategy: st.SearchStrategy[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """`count` documents, drawn before any is sent anywhere: what hypothesis draws then depends on
    nothing but the strategy and the profile (the same list every run, however the checks go)."""
    found: list[dict[str, Any]] = []

    @settings(PROFILE, max_examples=count)
    @given(strategy)
    def collect(doc: dict[str, Any]) -> None:
        found.append(doc)

    collect()
    return found


def _run(kind: str, count: int, api: ApiServer, cluster: Cluster, http: requests.Session, tmp: Path) -> Tally:
    tally = Tally()
    for index, doc in enumerate(drawn(documents(kind), count)):
        try:
            check_one(kind, doc, api, cluster, http, tally, tmp)
        except AssertionError as exc:
            raise AssertionError(f"{kind} document {index}: {json.dumps(doc, default=str)[:3000]}\n{exc}") from None
    return tally


def test_a_thousand_migrations(api: ApiServer, cluster: Cluster, http: requests.Session, tmp_path: Path) -> None:
    tally = _run("DomainMigration", MIGRATIONS, api, cluster, http, tmp_path)
    print(f"DomainMigration: {tally}")
    # hypothesis stops early only when it has seen everything: it must not here.
    assert tally.seen >= MIGRATIONS
    assert tally.valid >= MIGRATIONS // 10 and tally.seen - tally.crd >= MIGRATIONS // 2, tally
    assert not cluster.log.tracebacks(), cluster.log.tracebacks()


def test_hosts_and_policies(api: ApiServer, cluster: Cluster, http: requests.Session, tmp_path: Path) -> None:
    for kind, count in (("HypervisorHost", HOST_DOCS), ("MigrationPolicy", POLICIES)):
        tally = _run(kind, count, api, cluster, http, tmp_path)
        print(f"{kind}: {tally}")
        assert tally.seen >= count and 0 < tally.valid < tally.seen, tally
    assert not cluster.log.tracebacks(), cluster.log.tracebacks()


def test_domig_validate_as_a_process_says_the_same(tmp_path: Path) -> None:
    """A few, for real: the entry point, the exit code and the words are those of the in-process runs."""
    picked = [v.document for v in all_violations() if v.kind == "DomainMigration"][::25][:5]
    picked.append({"apiVersion": "domig.dev/v1alpha1", "kind": "DomainMigration", "metadata": {"name": "ok"},
                   "spec": {"domain": "wéb ✓", "source": "host-a"}})  # fmt: skip
    for i, doc in enumerate(picked):
        path = tmp_path / f"{i}.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        done = subprocess.run(
            [sys.executable, "-m", "controller.cli.main", "validate", "-f", str(path)],
            capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = domig_main(["validate", "-f", str(path)])
        assert (done.returncode, done.stdout, done.stderr) == (code, out.getvalue(), err.getvalue())
        assert "Traceback" not in done.stderr
        assert done.returncode == (0 if i == len(picked) - 1 else 2), done.stderr


def runnable() -> st.SearchStrategy[dict[str, Any]]:
    """Valid by the schema, on the hosts and domains of the cluster fixture, in both namespaces."""
    return document("DomainMigration", spec_schema(domain_migration_crd()), True).filter(
        lambda d: d["spec"]["source"] in HOSTS and d["spec"]["domain"] in DOMAINS
    )


def test_the_operator_runs_what_was_accepted(cluster: Cluster) -> None:
    kube = cluster.kube
    created: list[tuple[str, str]] = []

    for doc in drawn(runnable(), RUNS):
        doc["metadata"]["name"] = f"run-{len(created)}"
        try:
            kube.create(doc)
        except ApiError as exc:  # refused by the CRD or the webhook: not for this test
            assert exc.status in (400, 422), exc
            continue
        created.append((doc["metadata"]["namespace"], doc["metadata"]["name"]))
    assert len(created) >= RUNS // 4, created

    def settled(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return bool(status.get("reason")) and (status.get("phase") in TERMINAL or status.get("phase") == "Pending")

    deadline = time.monotonic() + 180
    while True:
        objects = [kube.read("domainmigrations", name, ns) or {} for ns, name in created]
        if all(settled(o) for o in objects):
            break
        assert time.monotonic() < deadline, [
            (o["metadata"]["name"], o.get("status")) for o in objects if not settled(o)
        ]
        time.sleep(0.25)
    ends: dict[str, int] = {}
    for obj in objects:
        key = f"{obj['status']['phase']}/{obj['status']['reason']}"
        ends[key] = ends.get(key, 0) + 1
        assert obj["status"].get("message") is not None
    print(f"operator over {len(created)} accepted documents: {dict(sorted(ends.items()))}")
    assert not cluster.log.tracebacks(), cluster.log.tracebacks()
    assert any(k.startswith("Succeeded") for k in ends) and any(k.startswith("Failed") for k in ends), ends


__all__ = ["tempfile"]
