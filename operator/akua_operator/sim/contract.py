"""The Akua contract (openapi.json) as the simulator's own check of what it answers.

``ResponseChecker`` validates one response of the simulator: a status and body the contract
declares for the call against the contract's schema; an error status it does not declare must
still carry the contract's error envelope; headers the contract does not describe against the
guide's decisions (``Retry-After`` in whole seconds on 429/503; an ``etag`` header, if any,
equal to the body's ``etag``). ``SimConfig.validate_responses`` turns it on; the tests' contract
helpers (tests/akua/akua_contract.py) use the same loader and validator.

Validation needs the ``jsonschema`` package (a development dependency), imported only when a
checker is created, so the simulator runs without it when validation is off.
"""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = [
    "SERVED",
    "Contract",
    "ResponseChecker",
    "find_contract",
]

# the calls the simulator serves: (template, method)
SERVED: tuple[tuple[str, str], ...] = (
    ("/clusters", "get"),
    ("/clusters", "post"),
    ("/clusters:import", "post"),
    ("/clusters/{id}", "get"),
    ("/clusters/{id}", "patch"),
    ("/clusters/{id}", "delete"),
    ("/clusters/{id}:suspend", "post"),
    ("/clusters/{id}:resume", "post"),
    ("/operations", "get"),
    ("/operations/{id}", "get"),
    ("/operations/{id}:wait", "post"),
    ("/operations/{id}:cancel", "post"),
    ("/workspaces", "get"),
)

_RETRY_AFTER = re.compile(r"[0-9]+")


def find_contract(explicit: str | os.PathLike[str] | None = None) -> Path:
    """Where openapi.json is: ``explicit``, else ``$AKUA_OPENAPI``, else
    ``shared/akua-api/openapi.json`` in the nearest parent directory of this package (or of the
    working directory) that has one."""
    if explicit:
        path = Path(explicit)
    elif os.environ.get("AKUA_OPENAPI"):
        path = Path(os.environ["AKUA_OPENAPI"])
    else:
        here = Path(__file__).resolve()
        candidates = [
            parent / "shared" / "akua-api" / "openapi.json"
            for start in (here, Path.cwd().resolve() / "x")
            for parent in start.parents
        ]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        raise FileNotFoundError(
            f"Akua OpenAPI contract not found at {path}; set AKUA_OPENAPI (or the simulator's "
            "contract_path) to its path"
        )
    return path


@functools.cache
def _load(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    return data


class Contract:
    """The parsed contract: schemas by path, method and status, and a validator."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = find_contract(path)
        self.spec = _load(str(self.path))
        self._jsonschema: Any = None
        self._validators: dict[int, Any] = {}

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` (local references only) until a concrete schema."""
        while "$ref" in schema:
            ref = schema["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local references are supported: {ref}")
            node: Any = self.spec
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
        return schema

    def component(self, name: str) -> dict[str, Any]:
        return self.resolve(self.spec["components"]["schemas"][name])

    def operation(self, path: str, method: str) -> dict[str, Any]:
        op: dict[str, Any] = self.spec["paths"][path][method.lower()]
        return op

    def request_schema(self, path: str, method: str) -> dict[str, Any]:
        body = self.operation(path, method)["requestBody"]
        return self.resolve(body["content"]["application/json"]["schema"])

    def declared_response(self, path: str, method: str, status: int) -> dict[str, Any] | None:
        """The body schema the contract declares for a status, None when it declares none."""
        entry = self.operation(path, method)["responses"].get(str(status))
        if entry is None:
            return None
        return self.resolve(entry["content"]["application/json"]["schema"])

    def errors(self, instance: Any, schema: dict[str, Any]) -> list[str]:
        """Why ``instance`` violates ``schema`` (empty when it is valid)."""
        validator = self._validator(schema)
        return [
            f"{'/'.join(str(p) for p in e.absolute_path) or '<body>'}: {e.message}"
            for e in validator.iter_errors(instance)
        ]

    def validate(self, instance: Any, schema: dict[str, Any]) -> None:
        """Raise ``jsonschema.ValidationError`` when ``instance`` violates ``schema``."""
        self._validator(schema).validate(instance)

    def _validator(self, schema: dict[str, Any]) -> Any:
        found = self._validators.get(id(schema))
        if found is not None and found[0] is schema:
            return found[1]
        if self._jsonschema is None:
            try:
                self._jsonschema = importlib.import_module("jsonschema")
            except ImportError as exc:  # pragma: no cover - a dev dependency
                raise RuntimeError(
                    "validating responses against the contract needs the jsonschema package"
                ) from exc
        root = copy.copy(schema)
        root["components"] = self.spec["components"]
        cls = self._jsonschema.Draft202012Validator
        validator = cls(root, format_checker=cls.FORMAT_CHECKER)
        self._validators[id(schema)] = (schema, validator)
        return validator


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(re.escape("{id}"), "[^/:]+") + "$")


class ResponseChecker:
    """Checks responses of the simulator's API (paths without the ``/v1`` prefix)."""

    def __init__(self, contract: Contract) -> None:
        self.contract = contract
        self.routes = [(_pattern(t), t, m) for t, m in SERVED]

    def template(self, method: str, path: str) -> str | None:
        method = method.lower()
        for rx, template, m in self.routes:
            if m == method and rx.match(path):
                return template
        return None

    def check(
        self, method: str, path: str, status: int, headers: dict[str, str], body: bytes
    ) -> list[str]:
        """Every way this response breaks the contract or the guide (empty: none)."""
        problems: list[str] = []
        try:
            data = json.loads(body)
        except ValueError:
            return [f"HTTP {status} body is not JSON"]
        template = self.template(method, path)
        schema: dict[str, Any] | None = None
        if template is not None:
            schema = self.contract.declared_response(template, method, status)
        if schema is None:
            if status < 400:
                where = f"{method} {template}" if template else f"unknown route {method} {path}"
                return [f"HTTP {status} is not a status the contract declares for {where}"]
            schema = self.contract.component("ApiErrorResponse")
        problems += self.contract.errors(data, schema)
        lower = {k.lower(): v for k, v in headers.items()}
        if status in (429, 503):
            value = lower.get("retry-after")
            if value is None:
                problems.append(f"HTTP {status} without Retry-After")
            elif not _RETRY_AFTER.fullmatch(value):
                problems.append(f"Retry-After {value!r} is not whole seconds")
        if "etag" in lower:
            current = data.get("etag") if isinstance(data, dict) else None
            if lower["etag"].strip('"') != current:
                problems.append(
                    f"etag header {lower['etag']!r} differs from the body's etag {current!r}"
                )
        return problems
