"""Helpers to read Akua's OpenAPI contract in tests: load, resolve, validate, make examples.

Loading, resolving and validating are the simulator's own (``akua_operator.sim.contract``), so
the tests and ``SimConfig.validate_responses`` judge responses the same way. The contract is
$AKUA_OPENAPI, else shared/akua-api/openapi.json in a parent directory of the repository. A
missing contract fails the tests loudly.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from akua_operator.sim.contract import Contract, ResponseChecker, find_contract

REPO = Path(__file__).resolve().parents[2]


def openapi_path() -> Path:
    return find_contract()


@functools.cache
def loaded() -> Contract:
    return Contract(openapi_path())


@functools.cache
def checker() -> ResponseChecker:
    return ResponseChecker(loaded())


def spec() -> dict[str, Any]:
    return loaded().spec


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (local references only) until a concrete schema."""
    return loaded().resolve(schema)


def component(name: str) -> dict[str, Any]:
    return loaded().component(name)


def operation(path: str, method: str) -> dict[str, Any]:
    return loaded().operation(path, method)


def request_schema(path: str, method: str) -> dict[str, Any]:
    return loaded().request_schema(path, method)


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    """The contract's body schema for a status; the error envelope for undeclared errors."""
    schema = loaded().declared_response(path, method, status)
    if schema is None:
        assert status >= 400, f"{method} {path} has no {status} response in the contract"
        return component("ApiErrorResponse")
    return schema


def variant(union_name: str, type_value: str) -> dict[str, Any]:
    """The branch of a ``type``-tagged union (OperationMetadata / OperationResponse)."""
    union = component(union_name)
    for raw in union.get("oneOf", union.get("anyOf", [])):
        branch = resolve(raw)
        enum = branch.get("properties", {}).get("type", {}).get("enum")
        if enum == [type_value]:
            return branch
    raise KeyError(f"{union_name} has no variant {type_value}")


def validate(instance: Any, schema: dict[str, Any]) -> None:
    """Validate against a contract schema (with the contract's components for ``$ref``)."""
    loaded().validate(instance, schema)


def types_of(schema: dict[str, Any]) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return {t} if isinstance(t, str) else set(t)


def example(schema: dict[str, Any]) -> Any:
    """A minimal instance valid against ``schema`` (non-null branch preferred)."""
    schema = resolve(schema)
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("oneOf", "anyOf"):
        if key in schema:
            branches = [resolve(b) for b in schema[key]]
            non_null = [b for b in branches if types_of(b) != {"null"}]
            return example(non_null[0] if non_null else branches[0])
    types = types_of(schema) - {"null"}
    kind = next(iter(sorted(types))) if types else "object"
    if kind == "string":
        if schema.get("format") == "uri":
            return "https://akua.dev/x"
        return "x" * max(1, schema.get("minLength", 1))
    if kind == "integer":
        return int(schema.get("minimum", 0)) + 1
    if kind == "number":
        return 1.0
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    out: dict[str, Any] = {}
    for name in schema.get("required", []):
        out[name] = example(schema["properties"][name])
    return out
