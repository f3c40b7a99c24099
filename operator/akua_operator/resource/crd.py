"""Generate the ``akuaclusters.akua.dev`` CustomResourceDefinition from the pydantic models.

``akua-operator crd`` prints :func:`crd_yaml`; the committed copy lives at
``charts/akua-operator/files/crds/akuaclusters.akua.dev.yaml`` (the chart renders it when
``crds.enabled``) and a unit test fails when it differs.

The pydantic JSON schema is turned into a structural OpenAPI v3 schema: ``$ref`` inlined,
``Optional[X]`` becomes ``X`` (absent, not null), titles dropped, enums typed, status defaults
dropped (the operator writes status; the API server must not invent it).
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from akua_operator.resource.models import (
    CRD_NAME,
    GROUP,
    KIND,
    PLURAL,
    PRINTER_COLUMNS,
    ROOT_VALIDATIONS,
    SHORT_NAMES,
    SINGULAR,
    SPEC_VALIDATIONS,
    VERSION,
    AkuaClusterSpec,
    AkuaClusterStatus,
)

_DROP = {"title"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = dict(defs[name])
        merged.update({k: v for k, v in node.items() if k != "$ref"})
        return _resolve(merged, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "properties":
            out[key] = {k: _resolve(v, defs) for k, v in value.items()}
        else:
            out[key] = _resolve(value, defs)
    return _structural(out)


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    # Optional[X] -> X
    for combinator in ("anyOf", "oneOf"):
        options = node.get(combinator)
        if isinstance(options, list):
            rest = [o for o in options if o != {"type": "null"}]
            if len(rest) == 1:
                node.pop(combinator)
                merged = dict(rest[0])
                merged.update(node)
                node = merged
                if node.get("default", ...) is None:
                    node.pop("default")
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if "const" in node:
        node["enum"] = [node.pop("const")]
        node.setdefault("type", "string")
    if node.get("type") == "object" and "properties" not in node:
        node.setdefault("additionalProperties", {"type": "string"})
    if node.get("type") == "object" and "properties" in node:
        node.pop("additionalProperties", None)
    return node


def _without_defaults(node: Any) -> Any:
    if isinstance(node, list):
        return [_without_defaults(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "default":
            continue
        if key == "required":
            out[key] = value
        elif key == "properties":
            out[key] = {k: _without_defaults(v) for k, v in value.items()}
        else:
            out[key] = _without_defaults(value)
    return out


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``model`` (camelCase field names)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    return schema


def spec_schema() -> dict[str, Any]:
    schema = openapi_schema(AkuaClusterSpec)
    # ``deletion`` defaults to {} so that the API server fills in its inner defaults.
    schema["properties"]["deletion"]["default"] = {}
    schema["x-kubernetes-validations"] = SPEC_VALIDATIONS
    return schema


def status_schema() -> dict[str, Any]:
    schema: dict[str, Any] = _without_defaults(openapi_schema(AkuaClusterStatus))
    schema.pop("required", None)
    # The one status default: a new object reads back with observedGeneration 0 (< generation)
    # until the operator writes, so kstatus (Flux wait/healthChecks) sees it in progress instead
    # of "current" in the moment before the operator's first write.
    schema["default"] = {"observedGeneration": 0}
    # kopf's progress records (handlers/akuacluster.py: progress_storage), kept as kopf writes
    # them. Not a model field: the operator's own status never reads or writes it.
    schema["properties"]["kopf"] = {
        "type": "object",
        "description": "kopf's progress records of the operator's handlers (internal).",
        "x-kubernetes-preserve-unknown-fields": True,
    }
    return schema


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "akua-operator"},
            # Argo CD and Helm keep a resource carrying this annotation when its release or
            # Application is deleted: uninstalling the API must not delete every AkuaCluster
            # (docs/helm.md "CRDs").
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": ["akua"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An Akua cluster (akua.dev) managed from Kubernetes.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": ROOT_VALIDATIONS,
                        }
                    },
                }
            ],
        },
    }


HEADER = (
    "# Generated by `akua-operator crd` from operator/akua_operator/resource/models.py.\n"
    "# Do not edit by hand: change the models and regenerate.\n"
)


def crd_yaml() -> str:
    """The CRD as the YAML document committed in the chart."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)
