"""The request limits the simulator enforces, one table for every parameter the contract bounds.

``REQUEST_LIMITS`` maps (path template, method, location, name) to the bound the simulator
applies; ``tests/akua/test_sim_limits.py`` compares it with the parameter and request-body
schemas of openapi.json both ways (every bounded parameter of a served call is here with the
contract's numbers, and nothing here is missing from the contract), and probes each bound.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BODY_FIELDS",
    "CANCEL_IF_MATCH",
    "CLUSTER_ID",
    "CONTEXT",
    "IDEMPOTENCY_KEY",
    "IF_MATCH",
    "LIST_LIMIT",
    "OPERATION_ID",
    "REQUEST_LIMITS",
    "WAIT_TIMEOUT",
    "Bound",
    "FieldSpec",
]


@dataclass(frozen=True)
class Bound:
    """Inclusive bounds: a string's length, or an integer's value; ``default`` when absent."""

    low: int | None
    high: int | None
    default: int | None = None

    def holds(self, value: int) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self) -> str:
        if self.high is None:
            return f"at least {self.low}"
        return f"{self.low}-{self.high}"


@dataclass(frozen=True)
class FieldSpec:
    """A string field of a request body: length bounds and allowed values."""

    length: Bound
    enum: frozenset[str] | None = None


CONTEXT = Bound(1, 53)  # akua-context
IDEMPOTENCY_KEY = Bound(1, 64)
IF_MATCH = Bound(1, 256)
CANCEL_IF_MATCH = Bound(1, 64)  # :cancel accepts an optional, shorter if-match
CLUSTER_ID = Bound(1, 54)
OPERATION_ID = Bound(1, 53)
LIST_LIMIT = Bound(1, 100, default=50)
WAIT_TIMEOUT = Bound(1, 60, default=30)  # the contract gives no default; the guide says 30

NAME = Bound(1, 100)
REGION_ID = Bound(1, 54)
KUBECONFIG = Bound(1, None)
PROVIDERS = frozenset({"managed_kaas", "imported_byoc"})
NETWORK_PROFILES = frozenset({"linux_cilium", "mixed_os_calico"})

# request bodies: (path, method) -> field -> spec (every property of the contract's schema)
BODY_FIELDS: dict[tuple[str, str], dict[str, FieldSpec]] = {
    ("/clusters", "post"): {
        "name": FieldSpec(NAME),
        "region_id": FieldSpec(REGION_ID),
        "network_profile": FieldSpec(Bound(None, None), NETWORK_PROFILES),
    },
    ("/clusters:import", "post"): {
        "name": FieldSpec(NAME),
        "region_id": FieldSpec(REGION_ID),
        "kubeconfig": FieldSpec(KUBECONFIG),
    },
    ("/clusters/{id}", "patch"): {
        "name": FieldSpec(NAME),
        "region_id": FieldSpec(REGION_ID),
        "provider": FieldSpec(Bound(None, None), PROVIDERS),
        "kubeconfig": FieldSpec(KUBECONFIG),
    },
}

_CLUSTER_WRITE = {
    ("path", "id"): CLUSTER_ID,
    ("header", "akua-context"): CONTEXT,
    ("header", "idempotency-key"): IDEMPOTENCY_KEY,
    ("header", "if-match"): IF_MATCH,
}

# (path, method, location, name) -> bound, for every parameter the simulator checks
REQUEST_LIMITS: dict[tuple[str, str, str, str], Bound] = {
    ("/clusters", "get", "query", "limit"): LIST_LIMIT,
    ("/clusters", "get", "header", "akua-context"): CONTEXT,
    ("/clusters", "post", "header", "akua-context"): CONTEXT,
    ("/clusters", "post", "header", "idempotency-key"): IDEMPOTENCY_KEY,
    ("/clusters:import", "post", "header", "akua-context"): CONTEXT,
    ("/clusters:import", "post", "header", "idempotency-key"): IDEMPOTENCY_KEY,
    ("/clusters/{id}", "get", "path", "id"): CLUSTER_ID,
    ("/clusters/{id}", "get", "header", "akua-context"): CONTEXT,
    **{("/clusters/{id}", "patch", loc, name): b for (loc, name), b in _CLUSTER_WRITE.items()},
    **{("/clusters/{id}", "delete", loc, name): b for (loc, name), b in _CLUSTER_WRITE.items()},
    **{
        (f"/clusters/{{id}}:{verb}", "post", loc, name): b
        for verb in ("suspend", "resume")
        for (loc, name), b in _CLUSTER_WRITE.items()
    },
    ("/operations", "get", "query", "limit"): LIST_LIMIT,
    ("/operations/{id}", "get", "path", "id"): OPERATION_ID,
    ("/operations/{id}", "get", "header", "akua-context"): CONTEXT,
    ("/operations/{id}:wait", "post", "path", "id"): OPERATION_ID,
    ("/operations/{id}:wait", "post", "query", "timeout"): WAIT_TIMEOUT,
    ("/operations/{id}:cancel", "post", "path", "id"): OPERATION_ID,
    ("/operations/{id}:cancel", "post", "header", "akua-context"): CONTEXT,
    ("/operations/{id}:cancel", "post", "header", "idempotency-key"): IDEMPOTENCY_KEY,
    ("/operations/{id}:cancel", "post", "header", "if-match"): CANCEL_IF_MATCH,
    ("/workspaces", "get", "query", "limit"): LIST_LIMIT,
}
