"""CustomResourceDefinitions generated from the pydantic models, so the two cannot drift apart.

`python -m controller.api.crds crds/` writes them; a test checks the committed files match.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from controller.api.base import Model
from controller.api.hypervisor_host import HypervisorHostSpec, HypervisorHostStatus
from controller.api.migration_policy import MigrationPolicySpec
from controller.api.resource import GROUP, VERSION
from controller.api.spec import DomainMigrationSpec
from controller.api.status import DomainMigrationStatus

Schema = dict[str, Any]
DROP = {"title", "default", "description", "$defs"}


def structural(schema: Schema, defs: dict[str, Schema]) -> Schema:
    """JSON Schema as pydantic writes it -> an apiextensions v1 structural schema."""
    if "$ref" in schema:
        return structural(defs[schema["$ref"].split("/")[-1]], defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        types = sorted(o.get("type", "") for o in options)
        if types == ["integer", "string"]:
            return {"x-kubernetes-int-or-string": True}
        if len(options) == 1:
            return structural(options[0], defs)
        raise ValueError(f"no structural form for {schema}")
    out: Schema = {}
    for key, value in schema.items():
        if key in DROP or (key == "additionalProperties" and value is False):
            continue
        if key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            else:
                out[key] = structural(value, defs)
        elif key == "const":
            out["enum"] = [value]
        elif key == "exclusiveMinimum":
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        else:
            out[key] = value
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def model_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return structural(raw, raw.get("$defs", {}))


def with_rules(schema: Schema, model: type[Model]) -> Schema:
    """The model's part of the rulebook, as the API server checks it: CEL rules and list types."""
    if model.RULES:
        schema["x-kubernetes-validations"] = [rule.crd() for rule in model.RULES]
    for rule in model.SETS:
        node = schema
        for part in rule.field:
            node = node["properties"][part]
        node["x-kubernetes-list-type"] = "set"
    return schema


def _status_schema(model: type[Any]) -> Schema:
    schema = model_schema(model)
    # kopf keeps its own bookkeeping under status; a real API server would prune it otherwise.
    schema["x-kubernetes-preserve-unknown-fields"] = True
    return schema


def crd(
    plural: str,
    kind: str,
    scope: str,
    short: list[str],
    spec: Schema,
    status: Schema,
    columns: list[Schema],
    categories: list[str] | None = None,
) -> Schema:
    names: Schema = {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": short}
    if categories:
        names["categories"] = categories
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": scope,
            "names": names,
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def domain_migration_crd() -> Schema:
    spec = with_rules(model_schema(DomainMigrationSpec), DomainMigrationSpec)
    spec["properties"]["params"]["additionalProperties"] = {"x-kubernetes-int-or-string": True}
    columns: list[Schema] = [
        {"name": "Domain", "type": "string", "jsonPath": ".spec.domain"},
        {"name": "Source", "type": "string", "jsonPath": ".spec.source"},
        {"name": "Destination", "type": "string", "jsonPath": ".status.destination"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Progress", "type": "number", "jsonPath": ".status.progress.percent", "format": "float"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
        {"name": "Queue", "type": "integer", "jsonPath": ".status.queuePosition", "priority": 1},
    ]
    return crd(
        "domainmigrations",
        "DomainMigration",
        "Namespaced",
        ["dmig"],
        spec,
        _status_schema(DomainMigrationStatus),
        columns,
        ["all"],
    )


def hypervisor_host_crd(spec_model: type[Model] = HypervisorHostSpec) -> Schema:
    """`spec_model` is the host model of another driver table (controller.api.hypervisor_host.host_spec_model)."""
    columns: list[Schema] = [
        {"name": "Driver", "type": "string", "jsonPath": ".spec.driver"},
        {"name": "URI", "type": "string", "jsonPath": ".spec.uri"},
        {"name": "Reachable", "type": "boolean", "jsonPath": ".status.reachable"},
        {"name": "Domains", "type": "integer", "jsonPath": ".status.domainCount"},
        {"name": "Running", "type": "integer", "jsonPath": ".status.runningDomains"},
        {"name": "Free Memory", "type": "integer", "jsonPath": ".status.memoryFreeBytes", "description": "bytes"},
        {"name": "CPUs", "type": "integer", "jsonPath": ".status.cpus"},
        {"name": "In", "type": "integer", "jsonPath": ".status.migrationsIn", "description": "migrations to it"},
        {"name": "Out", "type": "integer", "jsonPath": ".status.migrationsOut", "description": "migrations from it"},
        {"name": "Evacuation", "type": "string", "jsonPath": ".status.evacuation.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Total Memory", "type": "integer", "jsonPath": ".status.memoryTotalBytes", "priority": 1},
        {"name": "CPU Model", "type": "string", "jsonPath": ".status.cpuModel", "priority": 1},
    ]
    spec = with_rules(model_schema(spec_model), spec_model)
    return crd(
        "hypervisorhosts", "HypervisorHost", "Cluster", ["hvh"], spec, _status_schema(HypervisorHostStatus), columns
    )


def migration_policy_crd() -> Schema:
    columns: list[Schema] = [
        {"name": "Bandwidth", "type": "integer", "jsonPath": ".spec.bandwidthPerMigration"},
        {"name": "PostCopy", "type": "boolean", "jsonPath": ".spec.allowPostCopy"},
        {"name": "OnTimeout", "type": "string", "jsonPath": ".spec.onTimeout"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    status: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    return crd(
        "migrationpolicies", "MigrationPolicy", "Cluster", ["mpol"], model_schema(MigrationPolicySpec), status, columns
    )


def all_crds() -> dict[str, Schema]:
    return {
        "domainmigration.yaml": domain_migration_crd(),
        "hypervisorhost.yaml": hypervisor_host_crd(),
        "migrationpolicy.yaml": migration_policy_crd(),
    }


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render(document: Schema) -> str:
    body = yaml.dump(document, Dumper=_NoAliases, sort_keys=False, width=110)
    return "# Generated by `python -m controller.api.crds crds/` from controller/api; do not edit.\n" + body


def main(argv: list[str]) -> int:
    target = Path(argv[1] if len(argv) > 1 else "crds")
    target.mkdir(parents=True, exist_ok=True)
    for name, document in all_crds().items():
        (target / name).write_text(render(document))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
