"""The pydantic models agree with Akua's OpenAPI contract (drift breaks this test).

For every model and its schema in openapi.json: the same properties, the same required set, the
same enum values, the same string length limits and nullability, and the contract's own minimal
example parses.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Callable
from typing import Any

import akua_contract as contract
import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from akua_operator.akua import models as m

MODELS: list[tuple[type[BaseModel], Callable[[], dict[str, Any]]]] = [
    (m.Cluster, lambda: contract.component("Cluster")),
    (m.ClusterList, lambda: contract.component("ClusterList")),
    (m.Operation, lambda: contract.component("Operation")),
    (m.OperationStep, lambda: contract.component("OperationStep")),
    (m.OperationList, lambda: contract.component("OperationList")),
    (m.ApiErrorEntry, lambda: contract.component("ApiErrorEntry")),
    (m.ApiErrorResponse, lambda: contract.component("ApiErrorResponse")),
    (m.OperationErrorInfo, lambda: contract.component("Operation")["properties"]["error"]),
    (m.LastError, lambda: contract.component("Operation")["properties"]["last_error"]),
    (m.ClusterCreateMetadata, lambda: contract.variant("OperationMetadata", "cluster.create")),
    (m.ClusterDeleteMetadata, lambda: contract.variant("OperationMetadata", "cluster.delete")),
    (m.ClusterSuspendMetadata, lambda: contract.variant("OperationMetadata", "cluster.suspend")),
    (m.ClusterResumeMetadata, lambda: contract.variant("OperationMetadata", "cluster.resume")),
    (m.ClusterCreateResponse, lambda: contract.variant("OperationResponse", "cluster.create")),
    (m.ClusterDeleteResponse, lambda: contract.variant("OperationResponse", "cluster.delete")),
    (m.ClusterSuspendResponse, lambda: contract.variant("OperationResponse", "cluster.suspend")),
    (m.ClusterResumeResponse, lambda: contract.variant("OperationResponse", "cluster.resume")),
    (m.CreateClusterRequest, lambda: contract.request_schema("/clusters", "post")),
    (m.ImportClusterRequest, lambda: contract.request_schema("/clusters:import", "post")),
    (m.UpdateClusterRequest, lambda: contract.request_schema("/clusters/{id}", "patch")),
    (m.Workspace, lambda: contract.component("Workspace")),
    (m.WorkspaceList, lambda: contract.component("WorkspaceList")),
]
IDS = [model.__name__ for model, _ in MODELS]


def _enum_class(annotation: Any) -> type[enum.Enum] | None:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return annotation
    for arg in typing.get_args(annotation):
        found = _enum_class(arg)
        if found is not None:
            return found
    return None


def _string_props(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, raw in schema.get("properties", {}).items():
        prop = contract.resolve(raw)
        if "string" in contract.types_of(prop) and "enum" not in prop:
            out.append((name, prop))
    return out


def _parse(model: type[BaseModel], data: dict[str, Any]) -> BaseModel:
    return model.model_validate(data)


@pytest.mark.parametrize(("model", "schema_of"), MODELS, ids=IDS)
def test_same_properties(model: type[BaseModel], schema_of: Callable[[], dict[str, Any]]) -> None:
    schema = schema_of()
    assert set(model.model_fields) == set(schema.get("properties", {}))


@pytest.mark.parametrize(("model", "schema_of"), MODELS, ids=IDS)
def test_same_required_fields(
    model: type[BaseModel], schema_of: Callable[[], dict[str, Any]]
) -> None:
    schema = schema_of()
    required = {name for name, f in model.model_fields.items() if f.is_required()}
    assert required == set(schema.get("required", []))


@pytest.mark.parametrize(("model", "schema_of"), MODELS, ids=IDS)
def test_contract_example_parses(
    model: type[BaseModel], schema_of: Callable[[], dict[str, Any]]
) -> None:
    schema = schema_of()
    data = contract.example(schema)
    contract.validate(data, schema)  # the example generator itself follows the contract
    _parse(model, data)


@pytest.mark.parametrize(("model", "schema_of"), MODELS, ids=IDS)
def test_string_limits_and_nullability(
    model: type[BaseModel], schema_of: Callable[[], dict[str, Any]]
) -> None:
    schema = schema_of()
    base = contract.example(schema)
    for name, prop in _string_props(schema):
        if name == "type":  # the union tag
            continue
        low, high = prop.get("minLength", 0), prop.get("maxLength")
        if high is not None:
            _parse(model, {**base, name: "x" * high})
            with pytest.raises(ValidationError):
                _parse(model, {**base, name: "x" * (high + 1)})
        if low > 0:
            _parse(model, {**base, name: "x" * low})
            with pytest.raises(ValidationError):
                _parse(model, {**base, name: "x" * (low - 1)})
    for name, prop in schema.get("properties", {}).items():
        if _nullable(prop):
            _parse(model, {**base, name: None})
        elif name in schema.get("required", []):
            with pytest.raises(ValidationError):
                _parse(model, {**base, name: None})


def _nullable(prop: dict[str, Any]) -> bool:
    prop = contract.resolve(prop)
    if "null" in contract.types_of(prop):
        return True
    return any(_nullable(b) for b in prop.get("oneOf", []) + prop.get("anyOf", []))


@pytest.mark.parametrize(("model", "schema_of"), MODELS, ids=IDS)
def test_same_enums(model: type[BaseModel], schema_of: Callable[[], dict[str, Any]]) -> None:
    schema = schema_of()
    base = contract.example(schema)
    for name, raw in schema.get("properties", {}).items():
        prop = contract.resolve(raw)
        if "enum" not in prop:
            continue
        annotation = model.model_fields[name].annotation
        enum_cls = _enum_class(annotation)
        if enum_cls is not None:
            assert {e.value for e in enum_cls} == set(prop["enum"]), f"{model.__name__}.{name}"
        for value in prop["enum"]:
            parsed = getattr(_parse(model, {**base, name: value}), name)
            assert parsed == value
            if enum_cls is not None:
                assert isinstance(parsed, enum_cls), f"{model.__name__}.{name}={value}"


@pytest.mark.parametrize(
    ("model", "schema_name", "field"),
    [
        (m.Cluster, "Cluster", "state"),
        (m.Cluster, "Cluster", "provider"),
        (m.Operation, "Operation", "state"),
        (m.Operation, "Operation", "owner_type"),
        (m.OperationStep, "OperationStep", "status"),
        (m.OperationStep, "OperationStep", "execution_type"),
    ],
)
def test_unknown_enum_value_is_kept(model: type[BaseModel], schema_name: str, field: str) -> None:
    data = {**contract.example(contract.component(schema_name)), field: "quantum_entangled"}
    assert getattr(model.model_validate(data), field) == "quantum_entangled"


def test_extra_fields_are_kept() -> None:
    data = {**contract.example(contract.component("Cluster")), "region": "eu-1", "labels": {}}
    cluster = m.Cluster.model_validate(data)
    assert cluster.model_extra == {"region": "eu-1", "labels": {}}


def test_request_bodies_reject_unknown_fields_like_the_contract() -> None:
    for model, path, method in [
        (m.CreateClusterRequest, "/clusters", "post"),
        (m.ImportClusterRequest, "/clusters:import", "post"),
        (m.UpdateClusterRequest, "/clusters/{id}", "patch"),
    ]:
        assert contract.request_schema(path, method)["additionalProperties"] is False
        data = contract.example(contract.request_schema(path, method))
        with pytest.raises(ValidationError):
            model.model_validate({**data, "surprise": "x"})


def test_request_bodies_serialise_to_contract_valid_json() -> None:
    create = m.CreateClusterRequest(
        name="prod", region_id="reg_1", network_profile=m.NetworkProfile.MIXED_OS_CALICO
    )
    contract.validate(create.to_json(), contract.request_schema("/clusters", "post"))
    imported = m.ImportClusterRequest(
        name="prod", region_id="reg_1", kubeconfig=SecretStr("apiVersion: v1")
    )
    body = imported.to_json()
    assert body["kubeconfig"] == "apiVersion: v1"
    contract.validate(body, contract.request_schema("/clusters:import", "post"))
    assert "apiVersion" not in repr(imported)
    update = m.UpdateClusterRequest(name="renamed")
    assert update.to_json() == {"name": "renamed"}
    contract.validate(update.to_json(), contract.request_schema("/clusters/{id}", "patch"))


def test_operation_unions_are_tagged_by_type() -> None:
    base = contract.example(contract.component("Operation"))
    for kind, meta_cls, resp_cls in [
        ("cluster.create", m.ClusterCreateMetadata, m.ClusterCreateResponse),
        ("cluster.delete", m.ClusterDeleteMetadata, m.ClusterDeleteResponse),
        ("cluster.suspend", m.ClusterSuspendMetadata, m.ClusterSuspendResponse),
        ("cluster.resume", m.ClusterResumeMetadata, m.ClusterResumeResponse),
    ]:
        meta = contract.example(contract.variant("OperationMetadata", kind))
        resp = contract.example(contract.variant("OperationResponse", kind))
        op = m.Operation.model_validate({**base, "metadata": meta, "response": resp})
        assert isinstance(op.metadata, meta_cls)
        assert isinstance(op.response, resp_cls)
        assert op.type == kind
        assert (op.created_cluster_id is not None) == (kind == "cluster.create")


def test_operation_of_an_unknown_type_is_kept_generically() -> None:
    base = contract.example(contract.component("Operation"))
    op = m.Operation.model_validate(
        {
            **base,
            "metadata": {"type": "teleport.create", "galaxy": "far"},
            "response": {"type": "teleport.create", "x": 1},
        }
    )
    assert op.type == "teleport.create"
    assert isinstance(op.metadata, m.GenericOperationMetadata)
    assert op.metadata.model_extra == {"galaxy": "far"}
    assert op.created_cluster_id is None


def test_every_known_cluster_variant_of_the_contract_is_modelled() -> None:
    """A new cluster.* operation type in the contract shows up here as a reminder."""
    union = contract.component("OperationMetadata")
    cluster_types = {
        contract.resolve(b)["properties"]["type"]["enum"][0]
        for b in union["oneOf"]
        if contract.resolve(b)["properties"]["type"]["enum"][0].startswith("cluster.")
    }
    modelled = {"cluster.create", "cluster.delete", "cluster.suspend", "cluster.resume"}
    not_needed = {
        "cluster.capabilities.refresh",
        "cluster.capability.ensure",
        "cluster.worker_bootstrap.revoke",
    }
    assert cluster_types == modelled | not_needed
