"""The simulator's request limits are the contract's: its table (sim/limits.py) is compared with
the parameter and request-body schemas of openapi.json both ways, and every bound is probed."""

from __future__ import annotations

from typing import Any

import akua_contract as contract
import httpx
import pytest
from akua_testkit import BASE, TOKEN

from akua_operator.sim import FakeClock, SimConfig, SimTransport, create_app
from akua_operator.sim.contract import SERVED
from akua_operator.sim.limits import BODY_FIELDS, REQUEST_LIMITS, Bound


def _bounds(schema: dict[str, Any]) -> tuple[int | None, int | None]:
    schema = contract.resolve(schema)
    if "minLength" in schema or "maxLength" in schema:
        return schema.get("minLength"), schema.get("maxLength")
    return schema.get("minimum"), schema.get("maximum")


def _contract_limits() -> dict[tuple[str, str, str, str], tuple[int | None, int | None]]:
    out = {}
    for template, method in SERVED:
        for raw in contract.operation(template, method).get("parameters", []):
            param = contract.resolve(raw)
            low, high = _bounds(param["schema"])
            if low is not None or high is not None:
                out[(template, method, param["in"], param["name"])] = (low, high)
    return out


def test_every_bounded_parameter_of_a_served_call_has_the_contracts_bounds() -> None:
    ours = {key: (b.low, b.high) for key, b in REQUEST_LIMITS.items()}
    assert ours == _contract_limits()


def test_defaults_are_the_contracts_where_it_gives_one() -> None:
    for (template, method, where, name), bound in REQUEST_LIMITS.items():
        for raw in contract.operation(template, method).get("parameters", []):
            param = contract.resolve(raw)
            if (param["in"], param["name"]) == (where, name) and "default" in param["schema"]:
                assert bound.default == param["schema"]["default"], (template, name)


def test_request_bodies_have_the_contracts_fields_lengths_and_enums() -> None:
    for (template, method), fields in BODY_FIELDS.items():
        schema = contract.request_schema(template, method)
        assert set(fields) == set(schema["properties"]), template
        for name, spec in fields.items():
            prop = contract.resolve(schema["properties"][name])
            assert (spec.length.low, spec.length.high) == (
                prop.get("minLength"),
                prop.get("maxLength"),
            ), (template, name)
            assert (spec.enum is None) == ("enum" not in prop)
            if spec.enum is not None:
                assert spec.enum == set(prop["enum"])
    posts = {(t, m) for t, m in SERVED if contract.operation(t, m).get("requestBody")}
    assert posts == set(BODY_FIELDS)


# --- each bound, probed ------------------------------------------------------------------------


def _probes() -> list[tuple[str, str, str, str, Bound]]:
    return [
        (template, method, where, name, bound)
        for (template, method, where, name), bound in REQUEST_LIMITS.items()
    ]


def _value(bound: Bound, where: str, size: int) -> str:
    if where == "query":
        return str(size)
    return "x" * size


@pytest.mark.parametrize(
    ("template", "method", "where", "name", "bound"),
    _probes(),
    ids=[f"{m} {t} {w}:{n}" for t, m, w, n, _ in _probes()],
)
async def test_each_bound_is_enforced_with_a_400_naming_the_parameter(
    template: str, method: str, where: str, name: str, bound: Bound
) -> None:
    ws = "w" * 53
    sim = create_app(SimConfig(tokens=[TOKEN], workspace_tokens={"sk_long": ws}), clock=FakeClock())
    outside = []
    if bound.low is not None:
        outside.append(bound.low - 1)
    if bound.high is not None:
        outside.append(bound.high + 1)
    inside = [s for s in (bound.low, bound.high) if s is not None]
    token = "sk_long" if name == "akua-context" else TOKEN
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url=f"{BASE}/v1") as c:

        async def send(size: int) -> httpx.Response:
            path = template.replace("{id}", "i")
            headers = {"authorization": f"Bearer {token}", "if-match": "1"}
            params: dict[str, str] = {}
            value = _value(bound, where, size)
            if where == "path":
                path = template.replace("{id}", value)
            elif where == "header":
                headers[name] = value if name != "akua-context" else (ws * 2)[:size]
            else:
                params[name] = value
            return await c.request(method.upper(), path, headers=headers, params=params)

        for size in outside:
            if size < 1 and where != "query":
                continue  # an empty header or path segment is not a value
            r = await send(size)
            assert r.status_code == 400, (size, r.text)
            assert r.json()["errors"][0]["path"] == [where, name]
        for size in inside:
            r = await send(size)
            errors = r.json().get("errors") if r.status_code >= 400 else None
            assert not errors or errors[0].get("path") != [where, name], (size, r.text)
