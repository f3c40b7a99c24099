"""Helpers to read Akua's OpenAPI contract in tests: load, resolve, validate, make examples.

The contract is ../shared/akua-api/openapi.json next to the repository (override with
$AKUA_OPENAPI). A missing contract fails the tests loudly.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema

REPO = Path(__file__).resolve().parents[2]


def openapi_path() -> Path:
    env = os.environ.get("AKUA_OPENAPI")
    path = Path(env) if env else REPO.parent / "shared" / "akua-api" / "openapi.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"Akua OpenAPI contract not found at {path}; set AKUA_OPENAPI to its path"
        )
    return path


@functools.cache
def spec() -> dict[str, Any]:
    return json.loads(openapi_path().read_text(encoding="utf-8"))


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` (local references only) until a concrete schema."""
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = spec()
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        schema = node
    return schema


def component(name: str) -> dict[str, Any]:
    return resolve(spec()["components"]["schemas"][name])


def operation(path: str, method: str) -> dict[str, Any]:
    return spec()["paths"][path][method.lower()]


def request_schema(path: str, method: str) -> dict[str, Any]:
    return resolve(operation(path, method)["requestBody"]["content"]["application/json"]["schema"])


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    """The contract's body schema for a status; the error envelope for undeclared errors."""
    responses = operation(path, method)["responses"]
    entry = responses.get(str(status))
    if entry is None:
        assert status >= 400, f"{method} {path} has no {status} response in the contract"
        return component("ApiErrorResponse")
    return resolve(entry["content"]["application/json"]["schema"])


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
    root = copy.copy(schema)
    root["components"] = spec()["components"]
    jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


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
