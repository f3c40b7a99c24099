"""Configuration of the simulator: timings, faults, scenarios and the gap decisions.

Every decision the simulator makes where the Akua contract is silent is a field here (see
docs/simulator.md for the list and how to change each one).
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CONTRACT_PROFILE",
    "PROFILES",
    "STEP_NAMES",
    "FaultConfig",
    "Scenario",
    "SimConfig",
]

# Step names of the simulated workflows (the real ones are not published).
STEP_NAMES: dict[str, tuple[str, ...]] = {
    "cluster.create": (
        "validate_request",
        "provision_network",
        "provision_control_plane",
        "provision_workers",
    ),
    "cluster.delete": (
        "drain_workloads",
        "delete_workers",
        "delete_control_plane",
        "release_network",
    ),
    "cluster.suspend": ("drain_workloads", "stop_workers", "suspend_control_plane"),
    "cluster.resume": ("start_control_plane", "start_workers"),
}

OperationType = Literal["cluster.create", "cluster.delete", "cluster.suspend", "cluster.resume"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FaultConfig(_Model):
    """Faults injected into API calls (not into ``/_sim`` admin calls).

    Rates are probabilities per request, drawn from the seeded generator.
    """

    latency_ms: float = Field(0.0, ge=0)
    latency_jitter_ms: float = Field(0.0, ge=0)
    # The answer waits this long AFTER the request was processed and journaled: the window
    # between "the server did it" and "the client knows" (kill the client in it).
    answer_delay_ms: float = Field(0.0, ge=0)
    error_rate_500: float = Field(0.0, ge=0, le=1)
    error_rate_503: float = Field(0.0, ge=0, le=1)
    error_rate_429: float = Field(0.0, ge=0, le=1)
    retry_after_seconds: int = Field(1, ge=0)  # Retry-After on 429 and 503
    # Server-side token bucket: above it, 429 with Retry-After. rps 0 and burst 0: off.
    rate_limit_rps: float = Field(0.0, ge=0)
    rate_limit_burst: int = Field(0, ge=0)
    # Connection dropped after the request was processed (the response is lost) ...
    drop_rate: float = Field(0.0, ge=0, le=1)
    # ... or before it was processed.
    drop_before_rate: float = Field(0.0, ge=0, le=1)
    # GET /clusters/{id} returns the pre-write state for this long after a write.
    stale_read_seconds: float | None = Field(None, ge=0)
    # Limit faults to requests with this method / whose path contains this string.
    methods: list[str] | None = None
    path_contains: str | None = None
    # Stop injecting (rates back to 0) after this many injected faults.
    count: int | None = Field(None, ge=0)


class Scenario(_Model):
    """What goes wrong (or waits) in the next matching operation(s).

    mode ``fail``: ``fail_step`` fails and the operation ends FAILED (the step carries
    ``retryable``/``skippable``). ``flaky``: the step fails ``failures`` times, visible as
    ``last_error`` while the operation keeps RUNNING, then succeeds. ``approval``: the step waits
    (execution_type ``approval``) until ``POST /_sim/operations/{id}:approve``. ``cancel``: the
    operation is cancelled (as if by someone else) when it reaches the step.
    ``stall``: the step never finishes (until the scenario is cleared by a reset).
    """

    id: str | None = None
    operation_type: OperationType
    cluster_id: str | None = None
    cluster_name: str | None = None  # match cluster.create by the requested name
    mode: Literal["fail", "flaky", "approval", "cancel", "stall"] = "fail"
    fail_step: str | None = None  # alias of `step`
    step: str | None = None
    retryable: bool = True
    skippable: bool = False
    failures: int = Field(1, ge=1)  # flaky: failures before the step succeeds
    error_message: str | None = None
    times: int | None = Field(1, ge=1)  # how many operations it applies to; None: all

    @property
    def step_name(self) -> str | None:
        return self.step or self.fail_step


class SimConfig(_Model):
    """Everything the simulator can be told at start (and partly later, via ``/_sim``).

    Workspaces: ``tokens`` and ``member_tokens`` belong to the default workspace
    ``workspace_id``; ``workspace_tokens`` / ``workspace_member_tokens`` map further tokens to
    the workspace(s) they belong to (the first one is used when a request names none).
    """

    tokens: list[str] = Field(default_factory=lambda: ["sk_akua_test"])
    # Tokens that authenticate but are not workspace owners (DELETE is 403 for them).
    member_tokens: list[str] = Field(default_factory=list)
    workspace_id: str = Field("ws_sim0000000000000", min_length=1, max_length=53)
    # token -> workspace id (or ids) it belongs to, as an owner / as a member
    workspace_tokens: dict[str, str | list[str]] = Field(default_factory=dict)
    workspace_member_tokens: dict[str, str | list[str]] = Field(default_factory=dict)
    organization_id: str = "org_sim000000000000"
    html_base: str = "https://akua.dev"
    step_seconds: float = Field(2.0, ge=0)
    step_seconds_by_type: dict[str, float] = Field(default_factory=dict)
    seed: int = 0
    stale_read_seconds: float = Field(0.0, ge=0)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    scenarios: list[Scenario] = Field(default_factory=list)
    journal_max: int = Field(10_000, ge=0)
    # :wait re-checks at least this often (and exactly at step boundaries)
    wait_poll_seconds: float = Field(0.5, gt=0)

    # --- gap decisions (docs/simulator.md) ---
    # 1. 409 on etag mismatch: errors[0].code and the current etag in metadata.
    conflict_code: int = 10
    conflict_includes_etag: bool = True
    # 2. missing if-match where required: this status, path ["header", "if-match"].
    missing_if_match_status: int = 400
    # 3. one running operation per cluster; DELETE during a delete returns that operation.
    one_operation_per_cluster: bool = True
    delete_while_deleting_returns_operation: bool = True
    delete_while_deleting_checks_etag: bool = False
    # 4. idempotency-key reuse: same call -> first result; other call/body -> this status.
    idempotency_mismatch_status: int = 422
    # 4c. a replay is answered before the if-match, existence and state checks (else after
    # them: a resent DELETE whose etag has changed since gets 409, after success 404).
    idempotency_replay_before_checks: bool = True
    # 4d. keys are forgotten this long after their first use (None: never).
    idempotency_ttl_seconds: float | None = Field(None, gt=0)
    # 5. the etag changes on every change, including server-side state changes.
    etag_on_server_changes: bool = True
    # 6. after a successful delete, GET is 404 (else the cluster stays, state "deleting").
    deleted_cluster_404: bool = True
    # 7. Retry-After on 429/503: FaultConfig.retry_after_seconds.
    # 8. :wait returns the operation with its steps.
    wait_includes_steps: bool = True
    # Bodies: invalid JSON -> 400; valid JSON violating the schema -> this status.
    body_validation_status: int = 422
    # Cancel: the running step drains first (else the operation is CANCELLED at once).
    cancel_drains_step: bool = True
    # A failed/cancelled create removes the half-made cluster (its id was never revealed).
    remove_cluster_on_failed_create: bool = True
    # cluster.create operations are owned by the workspace (id revealed only on success).
    create_owner_is_cluster: bool = False
    # akua-context must name a workspace the token belongs to (else 403).
    enforce_context: bool = True

    # --- checks of the simulator itself ---
    # Validate every API response against the contract (openapi.json) and record violations
    # (GET /_sim/violations, the journal's "violations"); needs the jsonschema package.
    validate_responses: bool = False
    # Where openapi.json is (None: $AKUA_OPENAPI, else shared/akua-api/openapi.json in a parent
    # directory of the package).
    contract_path: str | None = None

    @model_validator(mode="after")
    def _one_workspace_list_per_token(self) -> Self:
        default = set(self.tokens) | set(self.member_tokens)
        mapped = set(self.workspace_tokens) | set(self.workspace_member_tokens)
        both = (default & mapped) | (set(self.workspace_tokens) & set(self.workspace_member_tokens))
        if both:
            raise ValueError(f"{len(both)} token(s) listed twice (default workspace and mapped)")
        for mapping in (self.workspace_tokens, self.workspace_member_tokens):
            for value in mapping.values():
                ids = [value] if isinstance(value, str) else value
                if not ids or not all(1 <= len(ws) <= 53 for ws in ids):
                    raise ValueError("a mapped token needs workspace ids of 1-53 characters")
        return self

    def step_seconds_for(self, operation_type: str) -> float:
        return self.step_seconds_by_type.get(operation_type, self.step_seconds)

    def workspaces_of(self, token: str) -> tuple[list[str], bool] | None:
        """The workspaces ``token`` belongs to (its own first) and whether it is an owner
        there; None for an unknown token."""
        for mapping, owner in (
            (self.workspace_tokens, True),
            (self.workspace_member_tokens, False),
        ):
            value = mapping.get(token)
            if value is not None:
                return ([value] if isinstance(value, str) else list(value)), owner
        if token in self.tokens:
            return [self.workspace_id], True
        if token in self.member_tokens:
            return [self.workspace_id], False
        return None

    def all_workspaces(self) -> list[str]:
        """Every workspace the configuration names, the default one first."""
        out = [self.workspace_id]
        for mapping in (self.workspace_tokens, self.workspace_member_tokens):
            for value in mapping.values():
                for ws in [value] if isinstance(value, str) else value:
                    if ws not in out:
                        out.append(ws)
        return out

    @classmethod
    def from_profile(cls, name: str, **overrides: Any) -> SimConfig:
        """A fresh configuration of a named profile (``PROFILES``) with ``overrides`` applied,
        e.g. ``SimConfig.from_profile("contract", step_seconds=0.2)``."""
        if name not in PROFILES:
            raise ValueError(f"unknown simulator profile {name!r}; known: {', '.join(PROFILES)}")
        return cls.model_validate({**PROFILES[name].model_dump(exclude_unset=True), **overrides})


# What makes the default simulator kinder than the contract, flipped (docs/simulator.md,
# "Profiles"). one_operation_per_cluster stays on.
CONTRACT_PROFILE: dict[str, Any] = {
    "conflict_includes_etag": False,  # no etag in 409 bodies: re-read the cluster
    "delete_while_deleting_returns_operation": False,  # a second DELETE while one runs: 409
    "wait_includes_steps": False,  # :wait without steps
    "idempotency_mismatch_status": 409,
    "etag_on_server_changes": False,  # etags change only on client writes
    "create_owner_is_cluster": True,  # create operations owned by the cluster
    "stale_read_seconds": 2.0,  # reads lag writes
    "idempotency_replay_before_checks": False,  # replays checked after if-match and state
    "idempotency_ttl_seconds": 600.0,  # keys expire after 10 minutes
}

# Named profiles. "contract" flips every switch above at once; "contract-only:<switch>" flips
# that one alone (for the switches that interact). Treat these as read-only templates: start a
# simulator with SimConfig.from_profile(name), which copies.
PROFILES: dict[str, SimConfig] = {
    "default": SimConfig(),
    "contract": SimConfig(**CONTRACT_PROFILE),
    **{
        f"contract-only:{key}": SimConfig(**{key: value}) for key, value in CONTRACT_PROFILE.items()
    },
}
