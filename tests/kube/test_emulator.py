"""
Tests of the emulated Kubernetes API server: each fix over stock kmock, then real kopf against it.
"""

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kmock
import kopf
import pytest

from .conftest import TOY_OPERATOR, KopfOperatorFactory, KopfSubprocessFactory
from .emulator import CEL_AVAILABLE, ApiError, ApiServer, json_patch, merge_patch, parse_label_selector

TOYS = "/apis/example.domig.dev/v1/namespaces/default/toys"
MERGE = {"Content-Type": "application/merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}


def toy(name: str = "t1", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.domig.dev/v1",
        "kind": "Toy",
        "metadata": {"name": name},
        "spec": {"vmName": "vm1", "mode": "live", **spec},
    }


@pytest.fixture()
async def client(kube: ApiServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(kube.server_url) as session:
        yield session


async def read_events(rsp: aiohttp.ClientResponse, count: int, within: float = 3) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            line = await rsp.content.readline()
            assert line, f"the stream ended after {events!r}"
            events.append(json.loads(line))
    return events


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not condition():  # polling the emulator's state (another thread)
            await asyncio.sleep(0.02)


# --- metadata, versions, generations ------------------------------------------------------------


async def test_server_sets_metadata_on_create(client: aiohttp.ClientSession) -> None:
    rsp1 = await client.post(TOYS, json=toy("t1"))
    rsp2 = await client.post(TOYS, json=toy("t2"))
    assert rsp1.status == rsp2.status == 201
    meta1, meta2 = (await rsp1.json())["metadata"], (await rsp2.json())["metadata"]
    assert meta1["uid"] != meta2["uid"] and len(meta1["uid"]) == 36
    assert int(meta2["resourceVersion"]) > int(meta1["resourceVersion"])
    assert meta1["generation"] == 1
    assert meta1["creationTimestamp"].endswith("Z")
    assert meta1["namespace"] == "default"


async def test_generation_grows_only_on_spec_changes(client: aiohttp.ClientSession) -> None:
    await client.post(TOYS, json=toy())
    rsp = await client.patch(f"{TOYS}/t1", json={"metadata": {"labels": {"a": "b"}}}, headers=MERGE)
    assert (await rsp.json())["metadata"]["generation"] == 1
    rsp = await client.patch(f"{TOYS}/t1/status", json={"status": {"phase": "X"}}, headers=MERGE)
    body = await rsp.json()
    assert body["metadata"]["generation"] == 1 and body["status"] == {"phase": "X"}
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 2}}, headers=MERGE)
    assert (await rsp.json())["metadata"]["generation"] == 2


async def test_noop_patch_keeps_resource_version(client: aiohttp.ClientSession) -> None:
    rv = (await (await client.post(TOYS, json=toy())).json())["metadata"]["resourceVersion"]
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"mode": "live"}}, headers=MERGE)
    assert (await rsp.json())["metadata"]["resourceVersion"] == rv


# --- optimistic concurrency: 422 on failed JSON-patch tests, 409 on stale versions, PUT --------


async def test_json_patch_with_failed_test_is_422(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    await client.post(TOYS, json=toy())
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
    ]
    rsp = await client.patch(f"{TOYS}/t1", json=ops, headers=JSONPATCH)
    assert rsp.status == 422
    assert (await rsp.json())["kind"] == "Status"
    assert "finalizers" not in kube.read("toys", "t1", "default")["metadata"]

    rv = kube.read("toys", "t1", "default")["metadata"]["resourceVersion"]
    ops[0]["value"] = rv
    rsp = await client.patch(f"{TOYS}/t1", json=ops, headers=JSONPATCH)
    assert rsp.status == 200
    assert (await rsp.json())["metadata"]["finalizers"] == ["x"]


async def test_stale_resource_version_is_409(client: aiohttp.ClientSession) -> None:
    created = await (await client.post(TOYS, json=toy())).json()
    await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 2}}, headers=MERGE)
    stale = created["metadata"]["resourceVersion"]
    rsp = await client.patch(
        f"{TOYS}/t1", json={"metadata": {"resourceVersion": stale}, "spec": {"replicas": 3}}, headers=MERGE
    )
    assert rsp.status == 409
    assert (await rsp.json())["reason"] == "Conflict"
    rsp = await client.put(f"{TOYS}/t1", json=created)
    assert rsp.status == 409


async def test_put_replaces_and_requires_resource_version(client: aiohttp.ClientSession) -> None:
    created = await (await client.post(TOYS, json=toy(tags=["a"]))).json()
    replacement = toy()
    rsp = await client.put(f"{TOYS}/t1", json=replacement)
    assert rsp.status == 422
    assert "metadata.resourceVersion" in (await rsp.json())["message"]
    replacement["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"]
    rsp = await client.put(f"{TOYS}/t1", json=replacement)
    assert rsp.status == 200
    body = await rsp.json()
    assert "tags" not in body["spec"]
    assert body["metadata"]["uid"] == created["metadata"]["uid"]
    assert body["metadata"]["generation"] == 2


async def test_unsupported_patch_type_is_415(client: aiohttp.ClientSession) -> None:
    await client.post(TOYS, json=toy())
    rsp = await client.patch(
        f"{TOYS}/t1", json={"spec": {}}, headers={"Content-Type": "application/strategic-merge-patch+json"}
    )
    assert rsp.status == 415


# --- generateName ----------------------------------------------------------------------------------


async def test_generate_name_gives_unique_names(client: aiohttp.ClientSession) -> None:
    event = {"metadata": {"generateName": "kopf-event-"}, "reason": "R", "message": "M"}
    names = set()
    for _ in range(5):
        rsp = await client.post("/api/v1/namespaces/default/events", json=event)
        assert rsp.status == 201
        names.add((await rsp.json())["metadata"]["name"])
    assert len(names) == 5 and all(n.startswith("kopf-event-") for n in names)
    rsp = await client.post("/api/v1/namespaces/default/events", json={"metadata": {}})
    assert rsp.status == 422


# --- status subresource ----------------------------------------------------------------------------


async def test_status_subresource_is_isolated(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    rsp = await client.post(TOYS, json={**toy(), "status": {"ignored": True}})
    assert "status" not in await rsp.json()  # ignored on creation
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 5}, "status": {"main": 1}}, headers=MERGE)
    assert rsp.status == 200
    rsp = await client.patch(
        f"{TOYS}/t1/status",
        json={"spec": {"replicas": 9}, "status": {"sub": 1}, "metadata": {"labels": {"x": "y"}}},
        headers=MERGE,
    )
    assert rsp.status == 200
    obj = kube.read("toys", "t1", "default")
    assert obj["spec"]["replicas"] == 5
    assert obj["status"] == {"sub": 1}
    assert "labels" not in obj["metadata"]


async def test_status_without_subresource_goes_via_main_resource(client: aiohttp.ClientSession) -> None:
    url = "/apis/kopf.dev/v1/clusterkopfpeerings"
    await client.post(url, json={"metadata": {"name": "p"}, "status": {"me": {"priority": 1}}})
    rsp = await client.patch(f"{url}/p", json={"status": {"you": {"priority": 2}}}, headers=MERGE)
    assert (await rsp.json())["status"] == {"me": {"priority": 1}, "you": {"priority": 2}}
    rsp = await client.patch(f"{url}/p/status", json={"status": {}}, headers=MERGE)
    assert rsp.status == 404


# --- lists, selectors, namespaces -------------------------------------------------------------------


async def test_list_has_kind_version_and_selectors(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    for name, labels in [("a", {"tier": "web"}), ("b", {"tier": "db"}), ("c", {})]:
        kube.create({**toy(name), "metadata": {"name": name, "labels": labels}})
    rsp = await client.get(TOYS)
    body = await rsp.json()
    assert body["kind"] == "ToyList" and body["apiVersion"] == "example.domig.dev/v1"
    assert int(body["metadata"]["resourceVersion"]) >= 3
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "b", "c"]
    assert all(i["kind"] == "Toy" for i in body["items"])

    async def names(query: str) -> list[str]:
        rsp = await client.get(f"/apis/example.domig.dev/v1/toys?{query}")
        return [i["metadata"]["name"] for i in (await rsp.json())["items"]]

    assert await names("labelSelector=tier%3Dweb") == ["a"]
    assert await names("labelSelector=tier%20in%20(web,db)") == ["a", "b"]
    assert await names("labelSelector=!tier") == ["c"]
    assert await names("labelSelector=tier!%3Dweb") == ["b", "c"]
    assert await names("fieldSelector=metadata.name%3Db") == ["b"]
    assert await names("fieldSelector=metadata.namespace%3Dother") == []
    first = await (await client.get(f"{TOYS}?limit=2")).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    rest = await (await client.get(f"{TOYS}?limit=2&continue={first['metadata']['continue']}")).json()
    assert [i["metadata"]["name"] for i in rest["items"]] == ["c"]
    assert parse_label_selector("a=1,b notin (2)")({"metadata": {"labels": {"a": "1", "b": "3"}}})


async def test_namespaces_are_served(client: aiohttp.ClientSession) -> None:
    rsp = await client.get("/api/v1/namespaces")
    assert rsp.status == 200
    body = await rsp.json()
    assert body["kind"] == "NamespaceList"
    assert {"default", "kube-system"} <= {i["metadata"]["name"] for i in body["items"]}
    rsp = await client.get("/api/v1/namespaces/default")
    assert (await rsp.json())["status"] == {"phase": "Active"}
    rsp = await client.post("/apis/example.domig.dev/v1/namespaces/absent/toys", json=toy())
    assert rsp.status == 404


# --- watching ------------------------------------------------------------------------------------


async def test_watch_streams_json_events(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    rsp = await client.get("/apis/example.domig.dev/v1/toys?watch=true")
    assert rsp.headers["Content-Type"].startswith("application/json")
    kube.create(toy())
    kube.patch_object("toys", "t1", {"spec": {"replicas": 2}}, "default")
    kube.delete_object("toys", "t1", "default")
    events = await read_events(rsp, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(set(rvs))
    rsp.close()


async def test_watch_since_resource_version_and_410(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    rv = kube.create(toy("a"))["metadata"]["resourceVersion"]
    kube.create(toy("b"))
    rsp = await client.get(f"/apis/example.domig.dev/v1/toys?watch=true&resourceVersion={rv}&timeoutSeconds=0.5")
    events = [json.loads(line) async for line in rsp.content]  # ends by the server-side timeout
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "b")]

    kube.compact()
    rsp = await client.get(f"/apis/example.domig.dev/v1/toys?watch=true&resourceVersion={rv}")
    [event] = [json.loads(line) async for line in rsp.content]
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


async def test_watch_initial_events_and_selector_transitions(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    kube.create({**toy("a"), "metadata": {"name": "a", "labels": {"x": "1"}}})
    rsp = await client.get(
        "/apis/example.domig.dev/v1/toys?watch=true&sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&labelSelector=x%3D1"
    )
    kube.patch_object("toys", "a", {"metadata": {"labels": {"x": None}}}, "default")
    kube.patch_object("toys", "a", {"metadata": {"labels": {"x": "1"}}}, "default")
    events = await read_events(rsp, 4)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK", "DELETED", "ADDED"]
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    rsp.close()


# --- deletion & finalizers -------------------------------------------------------------------------


async def test_finalizers_block_deletion(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    await client.post(TOYS, json={**toy(), "metadata": {"name": "t1", "finalizers": ["f1", "f2"]}})
    watch = await client.get("/apis/example.domig.dev/v1/toys?watch=true")
    rsp = await client.delete(f"{TOYS}/t1")
    assert rsp.status == 200
    obj = kube.read("toys", "t1", "default")
    assert obj is not None and obj["metadata"]["deletionTimestamp"]
    rsp = await client.patch(f"{TOYS}/t1", json={"metadata": {"finalizers": ["f1", "f2", "f3"]}}, headers=MERGE)
    assert rsp.status == 422  # no new finalizers on deleted objects
    rsp = await client.patch(f"{TOYS}/t1", json={"metadata": {"finalizers": ["f2"]}}, headers=MERGE)
    assert rsp.status == 200 and kube.read("toys", "t1", "default") is not None
    rsp = await client.patch(f"{TOYS}/t1", json={"metadata": {"finalizers": None}}, headers=MERGE)
    assert rsp.status == 200
    assert kube.read("toys", "t1", "default") is None
    events = await read_events(watch, 4)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    rsp = await client.get(f"{TOYS}/t1")
    assert rsp.status == 404
    watch.close()


# --- discovery -------------------------------------------------------------------------------------


async def test_discovery(client: aiohttp.ClientSession) -> None:
    assert (await (await client.get("/api")).json())["versions"] == ["v1"]
    groups = {g["name"]: g for g in (await (await client.get("/apis")).json())["groups"]}
    assert groups["example.domig.dev"]["preferredVersion"]["version"] == "v1"
    assert [v["version"] for v in groups["example.domig.dev"]["versions"]] == ["v1", "v1alpha1"]
    assert {"kopf.dev", "events.k8s.io", "apiextensions.k8s.io", "coordination.k8s.io"} <= set(groups)
    group = await (await client.get("/apis/example.domig.dev")).json()
    assert group["kind"] == "APIGroup" and group["preferredVersion"]["version"] == "v1"
    resources = {r["name"]: r for r in (await (await client.get("/apis/example.domig.dev/v1")).json())["resources"]}
    assert set(resources) == {"toys", "toys/status"}
    assert resources["toys"]["kind"] == "Toy" and resources["toys"]["namespaced"] is True
    assert resources["toys"]["shortNames"] == ["ty"]
    alpha = (await (await client.get("/apis/example.domig.dev/v1alpha1")).json())["resources"]
    assert [r["name"] for r in alpha] == ["toys"]  # no status subresource in v1alpha1
    core = {r["name"] for r in (await (await client.get("/api/v1")).json())["resources"]}
    assert {"namespaces", "events", "secrets", "pods", "pods/status"} <= core
    assert (await client.get("/apis/absent.example.com/v1")).status == 404


async def test_versions_are_converted_on_read(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    kube.create(toy())
    rsp = await client.get("/apis/example.domig.dev/v1alpha1/namespaces/default/toys/t1")
    assert (await rsp.json())["apiVersion"] == "example.domig.dev/v1alpha1"


async def test_crds_can_be_created_and_deleted_via_api(client: aiohttp.ClientSession) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
            ],
        },
    }
    rsp = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert rsp.status == 201
    assert {c["type"] for c in (await rsp.json())["status"]["conditions"]} == {"Established", "NamesAccepted"}
    rsp = await client.post("/apis/example.com/v1/gadgets", json={"metadata": {"name": "g"}, "spec": {"x": 1}})
    assert rsp.status == 201
    assert "spec" not in await rsp.json()  # pruned: the schema declares no properties
    rsp = await client.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com")
    assert rsp.status == 200
    assert (await client.get("/apis/example.com/v1/gadgets")).status == 404

    bad = {**crd, "metadata": {"name": "wrong.example.com"}}
    rsp = await client.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=bad)
    assert rsp.status == 422
    assert (await rsp.json())["details"]["causes"][0]["field"] == "metadata.name"


# --- schemas -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, field, reason, fragment",
    [
        ({"vmName": "vm1"}, "spec.mode", "FieldValueRequired", "Required value"),
        ({"mode": "bad"}, "spec.mode", "FieldValueNotSupported", 'supported values: "live", "offline"'),
        ({"replicas": "many"}, "spec.replicas", "FieldValueTypeInvalid", "must be of type integer"),
        ({"replicas": 0}, "spec.replicas", "FieldValueInvalid", "greater than or equal to 1"),
        ({"replicas": 11}, "spec.replicas", "FieldValueInvalid", "less than or equal to 10"),
        ({"vmName": "Bad_Name"}, "spec.vmName", "FieldValueInvalid", "should match '^[a-z][a-z0-9-]*$'"),
        ({"vmName": "a" * 21}, "spec.vmName", "FieldValueTooLong", "may not be longer than 20"),
        ({"tags": ["a", "b", "c", "d"]}, "spec.tags", "FieldValueTooMany", "must have at most 3 items"),
        ({"tags": [1]}, "spec.tags[0]", "FieldValueTypeInvalid", "must be of type string"),
        ({"labels": {"k": 1}}, "spec.labels[k]", "FieldValueTypeInvalid", "must be of type string"),
        ({"quota": 1.5}, "spec.quota", "FieldValueTypeInvalid", "integer,string"),
    ],
)
async def test_schema_violations_are_422(
    client: aiohttp.ClientSession, spec: dict[str, Any], field: str, reason: str, fragment: str
) -> None:
    body = toy()
    body["spec"].update(spec)
    if reason == "FieldValueRequired":
        del body["spec"]["mode"]
    rsp = await client.post(TOYS, json=body)
    assert rsp.status == 422
    status = await rsp.json()
    assert status["reason"] == "Invalid" and status["code"] == 422
    assert status["message"].startswith('Toy.example.domig.dev "t1" is invalid: ')
    assert f"{field}: " in status["message"] and fragment in status["message"]
    assert {"field": field, "reason": reason} in [
        {k: c[k] for k in ("field", "reason")} for c in status["details"]["causes"]
    ]


async def test_schema_valid_values_pass(client: aiohttp.ClientSession) -> None:
    rsp = await client.post(TOYS, json=toy(quota="10Gi", labels={"k": "v"}, tags=["a"], extra={"any": {"x": 1}}))
    assert rsp.status == 201


async def test_schema_on_updates_is_422(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    kube.create(toy())
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 100}}, headers=MERGE)
    assert rsp.status == 422
    assert kube.read("toys", "t1", "default")["spec"]["replicas"] == 1
    with pytest.raises(ApiError) as err:
        kube.patch_object("toys", "t1", {"spec": {"mode": None}}, "default")
    assert err.value.status == 422


async def test_unknown_fields_are_pruned_and_defaults_applied(client: aiohttp.ClientSession) -> None:
    rsp = await client.post(TOYS, json={**toy(junk=1, extra={"kept": True}), "junk": 2})
    assert rsp.status == 201
    assert 'unknown field \\"spec.junk\\"' in rsp.headers["Warning"]
    body = await rsp.json()
    assert "junk" not in body and "junk" not in body["spec"]
    assert body["spec"]["extra"] == {"kept": True}  # x-kubernetes-preserve-unknown-fields
    assert body["spec"]["replicas"] == 1 and body["spec"]["maxReplicas"] == 100  # defaults
    rsp = await client.post(f"{TOYS}?fieldValidation=Strict", json=toy("t2", junk=1))
    assert rsp.status == 400
    assert 'unknown field "spec.junk"' in (await rsp.json())["message"]


@pytest.mark.skipif(not CEL_AVAILABLE, reason="CEL needs the common-expression-language package")
async def test_cel_validation_rules(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    rsp = await client.post(TOYS, json=toy(minReplicas=5, maxReplicas=2))
    assert rsp.status == 422
    status = await rsp.json()
    assert status["details"]["causes"][0]["field"] == "spec"
    assert "minReplicas must not exceed maxReplicas" in status["message"]
    kube.create(toy())  # the transition rule (oldSelf) does not apply on creation
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"vmName": "other"}}, headers=MERGE)
    assert rsp.status == 422
    assert "vmName is immutable" in (await rsp.json())["message"]
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 3}}, headers=MERGE)
    assert rsp.status == 200


def gadget_crd(spec_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": spec_schema}}},
                }
            ],
        },
    }


AT_SPEC = "spec.versions[0].schema.openAPIV3Schema.properties[spec]"


@pytest.mark.parametrize(
    "spec_schema, cause",
    [
        (
            {"type": "object",
             "properties": {"tags": {"type": "array", "uniqueItems": True, "items": {"type": "string"}}}},
            f"{AT_SPEC}.properties[tags].uniqueItems: Forbidden: "
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            f"{AT_SPEC}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
            f"{AT_SPEC}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string"}},
             "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".nope"}]},
            f'{AT_SPEC}.x-kubernetes-validations[0].fieldPath: Invalid value: ".nope": '
            "fieldPath must be a valid path: does not refer to a valid field",
        ),
        (
            {"type": "object", "properties": {"list": {"type": "array", "items": {"type": "string"}}},
             "x-kubernetes-validations": [{"rule": "true", "fieldPath": ".list[0]"}]},
            f'{AT_SPEC}.x-kubernetes-validations[0].fieldPath: Invalid value: ".list[0]": '
            "fieldPath must be a valid path: expected single quoted string but got 0",
        ),
    ],
)  # fmt: skip
def test_crds_that_kube_refuses_are_refused(kube: ApiServer, spec_schema: dict[str, Any], cause: str) -> None:
    with pytest.raises(ApiError) as err:
        kube.create(gadget_crd(spec_schema))
    assert err.value.status == 422
    assert (
        err.value.message == f'CustomResourceDefinition.apiextensions.k8s.io "gadgets.example.com" is invalid: {cause}'
    )
    with pytest.raises(LookupError):
        kube.find_resource("gadgets")


def test_crds_that_kube_accepts_are_accepted(kube: ApiServer) -> None:
    tolerated = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": True}
    kube.create(gadget_crd(tolerated))
    assert kube.find_resource("gadgets").kind == "Gadget"


@pytest.mark.skipif(not CEL_AVAILABLE, reason="CEL needs the common-expression-language package")
@pytest.mark.parametrize(
    "field_path, spec, field",
    [
        (".params['xen.port']", {"params": {"xen.port": 0}}, "spec.params[xen.port]"),  # a map's key
        (".params.bandwidth", {"params": {"bandwidth": 0}}, "spec.params[bandwidth]"),  # also a key: params is a map
        (".timeouts.progress", {"timeouts": {"progress": 0}}, "spec.timeouts.progress"),  # a struct's field
        (".timeouts['progress']", {"timeouts": {"progress": 0}}, "spec.timeouts.progress"),
    ],
)
def test_cel_field_paths_are_rendered_as_kube_renders_them(
    kube: ApiServer, field_path: str, spec: dict[str, Any], field: str
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "params": {"type": "object", "additionalProperties": {"x-kubernetes-int-or-string": True}},
            "timeouts": {"type": "object", "properties": {"progress": {"type": "integer"}}},
        },
        "x-kubernetes-validations": [{"rule": "false", "message": "no", "fieldPath": field_path}],
    }
    kube.create(gadget_crd(schema))
    with pytest.raises(ApiError) as err:
        kube.create({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": spec})
    assert err.value.message == f'Gadget.example.com "g" is invalid: {field}: Invalid value: "object": no'
    assert [c["field"] for c in err.value.details["causes"]] == [field]


@pytest.mark.parametrize(
    "flags, causes",
    [
        (["live", "live"], ['spec.flags[1]: Duplicate value: "live"']),
        (["live", "live", "live"], ['spec.flags[1]: Duplicate value: "live"']),  # once per value, at its 2nd place
        (["a", "b", "a", "b"], ['spec.flags[2]: Duplicate value: "a"', 'spec.flags[3]: Duplicate value: "b"']),
        ([1, 1], ["spec.flags[1]: Duplicate value: 1"]),
    ],
)
def test_set_lists_report_duplicates_as_kube_does(kube: ApiServer, flags: list[Any], causes: list[str]) -> None:
    kube.create(
        gadget_crd({"type": "object", "properties": {"flags": {"type": "array", "x-kubernetes-list-type": "set"}}})
    )
    with pytest.raises(ApiError) as err:
        kube.create(
            {"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"flags": flags}}
        )
    summary = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
    assert err.value.message == f'Gadget.example.com "g" is invalid: {summary}'


def test_map_lists_report_duplicate_keys_as_kube_does(kube: ApiServer) -> None:
    ports = {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}},
    }
    kube.create(gadget_crd({"type": "object", "properties": {"ports": ports}}))
    spec = {"ports": [{"name": "a", "port": 1}, {"name": "a", "port": 2}]}
    with pytest.raises(ApiError) as err:
        kube.create({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": spec})
    assert err.value.message == (
        'Gadget.example.com "g" is invalid: spec.ports[1]: Duplicate value: map[string]interface {}{"name":"a"}'
    )


def test_patch_algorithms() -> None:
    assert merge_patch({"a": {"b": 1, "c": 2}}, {"a": {"b": None, "d": 3}}) == {"a": {"c": 2, "d": 3}}
    doc = {"a": [1, 2], "b": {"c": "x"}}
    assert json_patch(
        doc,
        [
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "move", "from": "/b/c", "path": "/d"},
            {"op": "remove", "path": "/a/0"},
        ],
    ) == {"a": [2, 3], "b": {}, "d": "x"}


# --- kmock features kept: fault injection & request log ------------------------------------------------


async def test_fault_injection_and_request_log(kube: ApiServer, client: aiohttp.ClientSession) -> None:
    kube.create(toy())
    kube[kmock.method.PATCH, kmock.resource("example.domig.dev", "v1", "toys")] << 503
    rsp = await client.patch(f"{TOYS}/t1", json={"spec": {"replicas": 2}}, headers=MERGE)
    assert rsp.status == 503
    assert kube.read("toys", "t1", "default")["spec"]["replicas"] == 1  # intercepted: no state change
    patches = [r for r in kube.log() if r.method == kmock.method.PATCH]
    assert len(patches) == 1 and patches[0].name == "t1" and patches[0].data == {"spec": {"replicas": 2}}


def test_kubeconfig_points_to_the_server(kube: ApiServer) -> None:
    text = kube.kubeconfig.read_text()
    assert kube.server_url in text and "current-context: emulator" in text
    assert kube.connection_info().server == kube.server_url


# --- real kopf against the emulator -------------------------------------------------------------------


async def test_kopf_end_to_end(kube: ApiServer, kopf_operator: KopfOperatorFactory) -> None:
    gate = threading.Event()
    memo = kopf.Memo(name="A", delete_gate=gate, deleted=[])
    operator = await kopf_operator(TOY_OPERATOR, memo=memo)

    # Schema violations are rejected as by a real server (kopf never sees them).
    with pytest.raises(ApiError) as err:
        kube.create(toy("bad", replicas=0))
    assert err.value.status == 422 and "spec.replicas" in str(err.value.message)

    kube.create(toy("t1"))
    obj = await kube.wait_for("toys", "t1", "default", lambda o: bool(o and o.get("status", {}).get("phase")))
    assert obj is not None
    assert obj["status"]["handledBy"] == "A"
    assert obj["status"]["toy_created"] == {"vm": "vm1"}
    assert obj["metadata"]["finalizers"] == ["kopf.zalando.org/KopfFinalizerMarker"]
    status_patches = [r for r in kube.log() if r.method == kmock.method.PATCH and r.subresource == "status"]
    assert status_patches, "kopf must patch the status via the status subresource"

    # The timer & the update handler work (i.e. watch-events arrive with fresh resource versions).
    await kube.wait_for("toys", "t1", "default", lambda o: bool(o and o["status"].get("ticks", 0) >= 2))
    kube.patch_object("toys", "t1", {"spec": {"replicas": 4}}, "default")
    await kube.wait_for("toys", "t1", "default", lambda o: bool(o and o["status"].get("replicas") == 4))

    # Several events, all posted (generateName), all referring to the object.
    await until(lambda: len(kube.list_objects("events")) >= 3)
    posted = kube.list_objects("events", "default")
    assert {e["reason"] for e in posted} >= {"Validating", "Provisioning", "Provisioned"}
    assert {e["involvedObject"]["name"] for e in posted} == {"t1"}
    assert len({e["metadata"]["name"] for e in posted}) == len(posted)

    # Deletion waits for the deletion handler, then the object is gone.
    kube.delete_object("toys", "t1", "default")
    await asyncio.sleep(0.5)
    obj = kube.read("toys", "t1", "default")
    assert obj is not None and obj["metadata"].get("deletionTimestamp")
    assert memo.deleted == []
    gate.set()
    await kube.wait_for("toys", "t1", "default", lambda o: o is None)
    assert memo.deleted == ["t1"]

    started = time.monotonic()
    await operator.stop()
    assert time.monotonic() - started < 2.0  # fast shutdown with fast_settings()


async def test_kopf_peering_only_one_operator_handles(kube: ApiServer, kopf_operator: KopfOperatorFactory) -> None:
    kube.create({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "toys"}})

    def peers() -> set[str]:
        peering = kube.read("clusterkopfpeerings", "toys") or {}
        return set(peering.get("status") or {})

    # Threads: on exit, an in-loop operator would cancel the other operator's tasks in the same loop.
    op_a = await kopf_operator(
        TOY_OPERATOR, peering="toys", priority=100, identity="op-a", thread=True, memo=kopf.Memo(name="A")
    )
    await kube.wait_for("clusterkopfpeerings", "toys", None, lambda _: peers() == {"op-a"})
    await kopf_operator(
        TOY_OPERATOR, peering="toys", priority=10, identity="op-b", thread=True, memo=kopf.Memo(name="B")
    )
    await kube.wait_for("clusterkopfpeerings", "toys", None, lambda _: peers() == {"op-a", "op-b"})

    for i in range(3):
        kube.create(toy(f"t{i}"))
    for i in range(3):
        obj = await kube.wait_for("toys", f"t{i}", "default", lambda o: bool(o and o.get("status", {}).get("phase")))
        assert obj is not None and obj["status"]["handledBy"] == "A"

    # When the higher-priority operator exits, it leaves the peering, and the other one takes over.
    await op_a.stop()
    await kube.wait_for("clusterkopfpeerings", "toys", None, lambda _: peers() == {"op-b"})
    kube.create(toy("late"))
    obj = await kube.wait_for("toys", "late", "default", lambda o: bool(o and o.get("status", {}).get("phase")))
    assert obj is not None and obj["status"]["handledBy"] == "B"


async def test_kopf_subprocess_survives_kill9(kube: ApiServer, kopf_subprocess: KopfSubprocessFactory) -> None:
    proc1 = kopf_subprocess(TOY_OPERATOR, env={"TOY_OPERATOR": "sub1"})
    kube.create(toy())
    obj = await kube.wait_for(
        "toys", "t1", "default", lambda o: bool(o and o.get("status", {}).get("phase")), within=20
    )
    assert obj is not None and obj["status"]["handledBy"] == "sub1", proc1.output

    proc1.kill()  # SIGKILL: no cleanup at all
    assert proc1.wait() == -9
    kube.delete_object("toys", "t1", "default")
    await asyncio.sleep(0.3)
    obj = kube.read("toys", "t1", "default")
    assert obj is not None and obj["metadata"]["deletionTimestamp"]  # the finalizer holds it

    proc2 = kopf_subprocess(TOY_OPERATOR, env={"TOY_OPERATOR": "sub2"})
    await kube.wait_for("toys", "t1", "default", lambda o: o is None, within=20)
    proc2.terminate()
    assert proc2.wait() == 0, proc2.output
