"""The simulator's world: clusters, operations, idempotency keys, scenarios.

All methods are synchronous and run under one lock, so the ASGI app (one event loop) and test
code in other threads see a consistent state. Operations advance lazily: whenever an operation
or its cluster is read, its steps are brought up to the clock's "now", so no background task is
needed and an injected clock makes everything deterministic.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from akua_operator.sim.clock import Clock
from akua_operator.sim.config import STEP_NAMES, Scenario, SimConfig

__all__ = ["ClusterRec", "OpRec", "SimError", "SimState", "StepRec"]

# Error codes in errors[].code (gRPC-style numbers; the contract only says "integer").
CODE_INVALID_ARGUMENT = 3
CODE_NOT_FOUND = 5
CODE_PERMISSION_DENIED = 7
CODE_RESOURCE_EXHAUSTED = 8
CODE_FAILED_PRECONDITION = 9
CODE_ABORTED = 10
CODE_INTERNAL = 13
CODE_UNAVAILABLE = 14
CODE_UNAUTHENTICATED = 16

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class SimError(Exception):
    """An API error the simulator answers with (rendered in the contract's error envelope)."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        path: list[str] | None = None,
        metadata: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.path = path
        self.metadata = metadata
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.path is not None:
            entry["path"] = self.path
        if self.metadata:
            entry["metadata"] = self.metadata
        return {"success": False, "errors": [entry], "result": {}}


def not_found(kind: str, ident: str) -> SimError:
    return SimError(404, CODE_NOT_FOUND, f"NOT_FOUND: {kind} {ident} not found")


@dataclass
class ClusterRec:
    id: str
    seq: int
    name: str
    workspace_id: str
    state: str
    provider: str
    reconciling: bool
    created_at: float
    updated_at: float
    etag: str
    region_id: str
    network_profile: str | None = None
    has_kubeconfig: bool = False
    active_op: str | None = None
    delete_blocked_reason: str | None = None


@dataclass
class StepRec:
    name: str
    status: str = "pending"
    execution_type: str = "system"
    started_at: float | None = None
    completed_at: float | None = None
    error_message: str | None = None
    retryable: bool = True
    skippable: bool = False
    retry_at: float | None = None


@dataclass
class OpRec:
    id: str
    seq: int
    type: str
    cluster_id: str
    owner_type: str
    owner_id: str
    metadata: dict[str, Any]
    started_at: float
    steps: list[StepRec]
    step_seconds: float
    prev_state: str
    workspace_id: str = ""
    scenario: Scenario | None = None
    state: str = "RUNNING"
    completed_at: float | None = None
    idx: int = 0
    cursor: float = 0.0  # when the current step (or its current attempt) started
    response: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    cancel_requested_at: float | None = None
    approved_at: dict[str, float] = field(default_factory=dict)
    failures_done: int = 0
    # forgotten by the API (``POST /_sim/operations/{id}:forget``): 404 to every call, yet it
    # runs on (its cluster is still made or deleted)
    forgotten: bool = False

    @property
    def done(self) -> bool:
        return self.state != "RUNNING"


@dataclass
class IdemRec:
    fingerprint: str
    op_id: str | None = None
    status: int = 200
    body: dict[str, Any] | None = None
    created_at: float = 0.0


@dataclass
class StaleRec:
    snapshot: dict[str, Any] | None
    until: float


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, num = raw.partition(":")
        value = int(num) if kind == "seq" else -1
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise SimError(
            400, CODE_INVALID_ARGUMENT, "INVALID_ARGUMENT: invalid cursor", path=["query", "cursor"]
        ) from exc
    if value < 0:
        raise SimError(
            400, CODE_INVALID_ARGUMENT, "INVALID_ARGUMENT: invalid cursor", path=["query", "cursor"]
        )
    return value


class SimState:
    """The simulated Akua workspace."""

    def __init__(self, config: SimConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.started_at = clock.now()
        self.reset()

    # --- bookkeeping ------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.rng = random.Random(self.config.seed)  # noqa: S311 - ids, not secrets
            self.fault_rng = random.Random(self.config.seed + 1)  # noqa: S311
            self.clusters: dict[str, ClusterRec] = {}
            self.deleted: dict[str, ClusterRec] = {}
            self.ops: dict[str, OpRec] = {}
            # idempotency keys are deduplicated per workspace: (workspace id, key)
            self.idem: dict[tuple[str, str], IdemRec] = {}
            self.stale: dict[str, StaleRec] = {}
            self.scenarios: list[Scenario] = [s.model_copy() for s in self.config.scenarios]
            self.faults = self.config.faults.model_copy()
            self._seq = 0
            self._etag = 0
            self._scenario_seq = 0
            for sc in self.scenarios:
                if sc.id is None:
                    sc.id = self._scenario_id()

    def _scenario_id(self) -> str:
        self._scenario_seq += 1
        return f"sc_{self._scenario_seq}"

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _new_id(self, prefix: str) -> str:
        return prefix + "".join(self.rng.choice(_ALPHABET) for _ in range(16))

    def _bump(self, cluster: ClusterRec, now: float, *, server_side: bool = False) -> None:
        cluster.updated_at = now
        if server_side and not self.config.etag_on_server_changes:
            return
        self._etag += 1
        cluster.etag = str(self._etag)

    def stale_read_seconds(self) -> float:
        if self.faults.stale_read_seconds is not None:
            return self.faults.stale_read_seconds
        return self.config.stale_read_seconds

    def _remember_stale(self, cluster_id: str, snapshot: dict[str, Any] | None, now: float) -> None:
        seconds = self.stale_read_seconds()
        if seconds <= 0:
            return
        current = self.stale.get(cluster_id)
        if current is not None and current.until > now:
            # keep the oldest snapshot within the window: reads lag behind all recent writes
            current.until = now + seconds
            return
        self.stale[cluster_id] = StaleRec(snapshot, now + seconds)

    # --- rendering --------------------------------------------------------------------------

    def cluster_json(self, c: ClusterRec) -> dict[str, Any]:
        return {
            "id": c.id,
            "html_url": f"{self.config.html_base}/clusters/{c.id}",
            "name": c.name,
            "workspace_id": c.workspace_id,
            "state": c.state,
            "provider": c.provider,
            "reconciling": c.reconciling,
            "created_at": int(c.created_at),
            "updated_at": int(c.updated_at),
            "etag": c.etag,
        }

    def op_json(self, op: OpRec, *, steps: bool = True) -> dict[str, Any]:
        owner_url = (
            f"{self.config.html_base}/clusters/{op.cluster_id}?tab=operations"
            if op.owner_type == "cluster"
            else f"{self.config.html_base}/operations/{op.id}"
        )
        out: dict[str, Any] = {
            "id": op.id,
            "workspace_id": op.workspace_id or self.config.workspace_id,
            "organization_id": self.config.organization_id,
            "owner_type": op.owner_type,
            "owner_id": op.owner_id,
            "parent_operation_id": None,
            "state": op.state,
            "done": op.done,
            "html_url": owner_url,
            "metadata": dict(op.metadata),
            "response": dict(op.response) if op.response is not None else None,
            "error": dict(op.error) if op.error is not None else None,
            "last_error": dict(op.last_error) if op.last_error is not None else None,
            "started_at": int(op.started_at),
            "completed_at": int(op.completed_at) if op.completed_at is not None else None,
        }
        if steps:
            out["steps"] = [
                {
                    "name": s.name,
                    "status": s.status,
                    "execution_type": s.execution_type,
                    "started_at": int(s.started_at if s.started_at is not None else op.started_at),
                    "completed_at": int(s.completed_at) if s.completed_at is not None else None,
                    "error_message": s.error_message,
                    "retryable": s.retryable,
                    "skippable": s.skippable,
                }
                for s in op.steps
            ]
        return out

    # --- operation engine -------------------------------------------------------------------

    def _take_scenario(
        self, op_type: str, cluster_id: str | None, name: str | None
    ) -> Scenario | None:
        for sc in self.scenarios:
            if sc.operation_type != op_type:
                continue
            if sc.cluster_id is not None and sc.cluster_id != cluster_id:
                continue
            if sc.cluster_name is not None and sc.cluster_name != name:
                continue
            chosen = sc.model_copy()
            if sc.times is not None:
                sc.times -= 1
                if sc.times <= 0:
                    self.scenarios.remove(sc)
            return chosen
        return None

    def _start_op(
        self, op_type: str, cluster: ClusterRec, now: float, metadata: dict[str, Any]
    ) -> OpRec:
        scenario = self._take_scenario(op_type, cluster.id, cluster.name)
        if op_type == "cluster.create" and not self.config.create_owner_is_cluster:
            owner_type, owner_id = "workspace", cluster.workspace_id
        else:
            owner_type, owner_id = "cluster", cluster.id
        op = OpRec(
            id=self._new_id("op_"),
            seq=self._next_seq(),
            type=op_type,
            cluster_id=cluster.id,
            owner_type=owner_type,
            owner_id=owner_id,
            metadata=metadata,
            started_at=now,
            steps=[StepRec(name) for name in STEP_NAMES[op_type]],
            step_seconds=self.config.step_seconds_for(op_type),
            prev_state=cluster.state,
            workspace_id=cluster.workspace_id,
            scenario=scenario,
            cursor=now,
        )
        self.ops[op.id] = op
        cluster.active_op = op.id
        cluster.reconciling = True
        if op_type == "cluster.delete":
            cluster.state = "deleting"
        elif op_type == "cluster.create":
            cluster.state = "provisioning"
        self._bump(cluster, now)
        self._advance(op, now)
        return op

    def _scenario_for(self, op: OpRec, step: StepRec) -> Scenario | None:
        sc = op.scenario
        if sc is None:
            return None
        if sc.step_name is not None and sc.step_name != step.name:
            return None
        if sc.step_name is None and step is not op.steps[-1] and sc.mode != "cancel":
            # a scenario without a step applies to the last step ("fail" / "flaky" ...)
            return None
        if sc.step_name is None and sc.mode == "cancel" and step is not op.steps[0]:
            return None
        return sc

    def _advance(self, op: OpRec, now: float) -> None:
        """Bring a running operation up to ``now``."""
        while op.state == "RUNNING":
            step = op.steps[op.idx]
            sc = self._scenario_for(op, step)
            if step.status == "pending":
                step.status = "running"
                step.started_at = op.cursor
                if sc is not None and sc.mode == "approval":
                    step.execution_type = "approval"
                if sc is not None and sc.mode == "cancel":
                    self._finish(op, "CANCELLED", op.cursor, "operation cancelled")
                    return
            if step.status == "failed" and step.retry_at is not None:
                if step.retry_at > now:
                    return
                step.status = "running"
                step.started_at = step.retry_at
                op.cursor = step.retry_at
                step.retry_at = None
            # a cancel request while waiting for a person ends the operation at once
            waiting = sc is not None and sc.mode in ("approval", "stall")
            if waiting and sc is not None and sc.mode == "approval" and step.name in op.approved_at:
                end = max(op.cursor, op.approved_at[step.name])
            elif waiting:
                if op.cancel_requested_at is not None:
                    step.status = "skipped"
                    self._finish(op, "CANCELLED", op.cancel_requested_at, "operation cancelled")
                return
            else:
                end = op.cursor + op.step_seconds
            if op.cancel_requested_at is not None and not self.config.cancel_drains_step:
                step.status = "skipped"
                self._finish(op, "CANCELLED", op.cancel_requested_at, "operation cancelled")
                return
            if end > now:
                return
            if sc is not None and sc.mode == "fail":
                message = sc.error_message or f"step {step.name} failed (simulated)"
                step.status = "failed"
                step.completed_at = end
                step.error_message = message
                step.retryable = sc.retryable
                step.skippable = sc.skippable
                op.last_error = {"message": message, "step_name": step.name}
                self._finish(op, "FAILED", end, message)
                return
            if sc is not None and sc.mode == "flaky" and op.failures_done < sc.failures:
                message = sc.error_message or f"step {step.name} failed, retrying (simulated)"
                op.failures_done += 1
                step.status = "failed"
                step.error_message = message
                step.retryable = True
                step.skippable = sc.skippable
                step.retry_at = end + max(op.step_seconds, 0.0)
                op.last_error = {"message": message, "step_name": step.name}
                op.cursor = end
                continue
            step.status = "completed"
            step.completed_at = end
            step.error_message = None
            if op.last_error is not None and op.last_error.get("step_name") == step.name:
                op.last_error = None
            op.cursor = end
            op.idx += 1
            if op.cancel_requested_at is not None:
                self._finish(op, "CANCELLED", end, "operation cancelled")
                return
            if op.idx >= len(op.steps):
                self._finish(op, "SUCCEEDED", end, None)
                return

    def _finish(self, op: OpRec, state: str, at: float, message: str | None) -> None:
        op.state = state
        op.completed_at = at
        if state in ("FAILED", "CANCELLED"):
            op.error = {"message": message or state.lower()}
        if state == "CANCELLED":
            for step in op.steps:
                if step.status in ("pending", "running"):
                    step.status = "skipped"
        else:
            for step in op.steps:
                if step.status == "running":
                    step.status = "failed" if state == "FAILED" else "completed"
        cluster = self.clusters.get(op.cluster_id)
        if cluster is None:
            return
        if cluster.active_op == op.id:
            cluster.active_op = None
        cluster.reconciling = False
        if state == "SUCCEEDED":
            op.response = {"type": op.type, "cluster_id": cluster.id}
            if op.type == "cluster.create":
                cluster.state = "active"
            elif op.type == "cluster.suspend":
                cluster.state = "suspended"
            elif op.type == "cluster.resume":
                cluster.state = "active"
            elif op.type == "cluster.delete":
                if self.config.deleted_cluster_404:
                    del self.clusters[cluster.id]
                    self.deleted[cluster.id] = cluster
                    self.stale.pop(cluster.id, None)
                    return
                cluster.state = "deleting"
        elif op.type == "cluster.create":
            if self.config.remove_cluster_on_failed_create:
                del self.clusters[cluster.id]
                self.deleted[cluster.id] = cluster
                return
            cluster.state = "pending"
        else:
            cluster.state = op.prev_state
        self._bump(cluster, at, server_side=True)

    def advance_all(self) -> None:
        now = self.clock.now()
        for op in self.ops.values():
            if op.state == "RUNNING":
                self._advance(op, now)

    def _advance_cluster(self, cluster_id: str, now: float) -> None:
        cluster = self.clusters.get(cluster_id)
        if cluster is not None and cluster.active_op is not None:
            self._advance(self.ops[cluster.active_op], now)

    # --- idempotency ------------------------------------------------------------------------

    @staticmethod
    def fingerprint(method: str, path: str, body: Any) -> str:
        return json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))

    def _ws(self, ws: str | None) -> str:
        return ws if ws is not None else self.config.workspace_id

    def _replay(
        self, ws: str, key: str | None, fingerprint: str
    ) -> tuple[int, dict[str, Any]] | None:
        """The first answer to a request repeated with the same key in the same workspace; an
        error when the key was used for another request; None when the key is new (or expired:
        ``idempotency_ttl_seconds``)."""
        if key is None:
            return None
        rec = self.idem.get((ws, key))
        if rec is None:
            return None
        ttl = self.config.idempotency_ttl_seconds
        if ttl is not None and self.clock.now() - rec.created_at >= ttl:
            del self.idem[(ws, key)]
            return None
        if rec.fingerprint != fingerprint:
            raise SimError(
                self.config.idempotency_mismatch_status,
                CODE_INVALID_ARGUMENT,
                "INVALID_ARGUMENT: idempotency-key was already used for a different request",
                path=["header", "idempotency-key"],
            )
        if rec.op_id is not None:
            op = self.ops[rec.op_id]
            self._advance(op, self.clock.now())
            return rec.status, self.op_json(op)
        assert rec.body is not None
        return rec.status, copy.deepcopy(rec.body)

    def _replay_first(
        self, ws: str, key: str | None, fingerprint: str
    ) -> tuple[int, dict[str, Any]] | None:
        """``_replay`` when replays are answered before any other check (decision 4)."""
        if not self.config.idempotency_replay_before_checks:
            return None
        return self._replay(ws, key, fingerprint)

    def _replay_last(
        self, ws: str, key: str | None, fingerprint: str
    ) -> tuple[int, dict[str, Any]] | None:
        """``_replay`` when replays are answered only after if-match and state checks."""
        if self.config.idempotency_replay_before_checks:
            return None
        return self._replay(ws, key, fingerprint)

    def _remember(self, ws: str, key: str | None, rec: IdemRec) -> None:
        if key is not None:
            rec.created_at = self.clock.now()
            self.idem[(ws, key)] = rec

    # --- cluster API ------------------------------------------------------------------------

    def _cluster(self, cluster_id: str, ws: str | None = None) -> ClusterRec:
        """The cluster, 404 when it does not exist or belongs to another workspace (``ws``;
        None: the default workspace)."""
        cluster = self.clusters.get(cluster_id)
        if cluster is None or cluster.workspace_id != self._ws(ws):
            raise not_found("cluster", cluster_id)
        return cluster

    def get_cluster(self, cluster_id: str, ws: str | None = None) -> dict[str, Any]:
        with self.lock:
            ws = self._ws(ws)
            now = self.clock.now()
            self._advance_cluster(cluster_id, now)
            stale = self.stale.get(cluster_id)
            if stale is not None and stale.until > now:
                if stale.snapshot is None or stale.snapshot.get("workspace_id") != ws:
                    raise not_found("cluster", cluster_id)
                return copy.deepcopy(stale.snapshot)
            return self.cluster_json(self._cluster(cluster_id, ws))

    def list_clusters(
        self, limit: int, cursor: str | None, ws: str | None = None
    ) -> dict[str, Any]:
        with self.lock:
            ws = self._ws(ws)
            self.advance_all()
            after = decode_cursor(cursor) if cursor else 0
            items = [c for c in self.clusters.values() if c.seq > after and c.workspace_id == ws]
            items.sort(key=lambda c: c.seq)
            page = items[:limit]
            has_more = len(items) > limit
            return {
                "data": [
                    shown
                    for c in page
                    if (shown := self._listed(c, ws, now=self.clock.now())) is not None
                ],
                "has_more": has_more,
                "next_cursor": encode_cursor(page[-1].seq) if has_more and page else None,
            }

    def _listed(self, cluster: ClusterRec, ws: str, *, now: float) -> dict[str, Any] | None:
        """A list item: within the stale-read window after a write, what ``GET
        /clusters/{id}`` would show then (a list is a read too); None: not listed then."""
        stale = self.stale.get(cluster.id)
        if stale is not None and stale.until > now:
            if stale.snapshot is None or stale.snapshot.get("workspace_id") != ws:
                return None
            return copy.deepcopy(stale.snapshot)
        return self.cluster_json(cluster)

    def seed_cluster(
        self,
        *,
        name: str,
        state: str = "active",
        provider: str = "managed_kaas",
        cluster_id: str | None = None,
        region_id: str = "reg_sim",
        delete_blocked_reason: str | None = None,
        workspace_id: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            now = self.clock.now()
            cid = cluster_id or self._new_id("clu_")
            if cid in self.clusters:
                raise SimError(409, CODE_ABORTED, f"ABORTED: cluster {cid} exists")
            cluster = ClusterRec(
                id=cid,
                seq=self._next_seq(),
                name=name,
                workspace_id=self._ws(workspace_id),
                state=state,
                provider=provider,
                reconciling=False,
                created_at=now,
                updated_at=now,
                etag="",
                region_id=region_id,
                delete_blocked_reason=delete_blocked_reason,
            )
            self._bump(cluster, now)
            self.clusters[cid] = cluster
            return self.cluster_json(cluster)

    def set_delete_blocker(self, cluster_id: str, reason: str | None) -> dict[str, Any]:
        with self.lock:
            cluster = self.clusters.get(cluster_id)
            if cluster is None:
                raise not_found("cluster", cluster_id)
            cluster.delete_blocked_reason = reason
            return self.cluster_json(cluster)

    def create_cluster(
        self, body: dict[str, Any], key: str | None, fingerprint: str, ws: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            ws = self._ws(ws)
            replay = self._replay(ws, key, fingerprint)
            if replay is not None:
                return replay
            now = self.clock.now()
            cluster = ClusterRec(
                id=self._new_id("clu_"),
                seq=self._next_seq(),
                name=body["name"],
                workspace_id=ws,
                state="provisioning",
                provider="managed_kaas",
                reconciling=True,
                created_at=now,
                updated_at=now,
                etag="",
                region_id=body["region_id"],
                network_profile=body.get("network_profile", "linux_cilium"),
            )
            self.clusters[cluster.id] = cluster
            self._remember_stale(cluster.id, None, now)
            op = self._start_op(
                "cluster.create",
                cluster,
                now,
                {
                    "type": "cluster.create",
                    "workspace_id": ws,
                    "region_id": body["region_id"],
                    "name": body["name"],
                },
            )
            self._remember(ws, key, IdemRec(fingerprint, op_id=op.id, status=202))
            return 202, self.op_json(op)

    def import_cluster(
        self, body: dict[str, Any], key: str | None, fingerprint: str, ws: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            ws = self._ws(ws)
            replay = self._replay(ws, key, fingerprint)
            if replay is not None:
                return replay
            now = self.clock.now()
            cluster = ClusterRec(
                id=self._new_id("clu_"),
                seq=self._next_seq(),
                name=body["name"],
                workspace_id=ws,
                state="active",
                provider="imported_byoc",
                reconciling=False,
                created_at=now,
                updated_at=now,
                etag="",
                region_id=body["region_id"],
                has_kubeconfig=True,
            )
            self._bump(cluster, now)
            self.clusters[cluster.id] = cluster
            self._remember_stale(cluster.id, None, now)
            result = self.cluster_json(cluster)
            self._remember(ws, key, IdemRec(fingerprint, status=200, body=copy.deepcopy(result)))
            return 200, result

    def _check_mutation(
        self, cluster: ClusterRec, if_match: str, *, check_running: bool = True
    ) -> None:
        if check_running and self.config.one_operation_per_cluster and cluster.active_op:
            metadata = {"active_operation_id": cluster.active_op}
            if self.config.conflict_includes_etag:
                metadata["etag"] = cluster.etag
            raise SimError(
                409,
                self.config.conflict_code,
                f"ABORTED: operation {cluster.active_op} is running on this cluster",
                metadata=metadata,
            )
        if if_match != cluster.etag:
            raise SimError(
                409,
                self.config.conflict_code,
                "ABORTED: etag mismatch",
                metadata={"etag": cluster.etag} if self.config.conflict_includes_etag else None,
            )

    def update_cluster(
        self,
        cluster_id: str,
        body: dict[str, Any],
        if_match: str,
        key: str | None,
        fingerprint: str,
        *,
        ws: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            ws = self._ws(ws)
            now = self.clock.now()
            self._advance_cluster(cluster_id, now)
            replay = self._replay_first(ws, key, fingerprint)
            if replay is not None:
                return replay
            cluster = self._cluster(cluster_id, ws)
            self._check_mutation(cluster, if_match)
            replay = self._replay_last(ws, key, fingerprint)
            if replay is not None:
                return replay
            before = self.cluster_json(cluster)
            if "name" in body:
                cluster.name = body["name"]
            if "region_id" in body:
                cluster.region_id = body["region_id"]
            if "provider" in body:
                cluster.provider = body["provider"]
            if "kubeconfig" in body:
                cluster.has_kubeconfig = True
            self._bump(cluster, now)
            self._remember_stale(cluster_id, before, now)
            result = self.cluster_json(cluster)
            self._remember(ws, key, IdemRec(fingerprint, status=200, body=copy.deepcopy(result)))
            return 200, result

    def cluster_operation(
        self,
        op_type: str,
        cluster_id: str,
        if_match: str,
        key: str | None,
        fingerprint: str,
        *,
        owner: bool = True,
        ws: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """DELETE, :suspend and :resume."""
        with self.lock:
            ws = self._ws(ws)
            now = self.clock.now()
            self._advance_cluster(cluster_id, now)
            replay = self._replay_first(ws, key, fingerprint)
            if replay is not None:
                return replay
            cluster = self._cluster(cluster_id, ws)
            if op_type == "cluster.delete" and not owner:
                raise SimError(
                    403,
                    CODE_PERMISSION_DENIED,
                    "PERMISSION_DENIED: only workspace owners can delete clusters",
                )
            running = self.ops.get(cluster.active_op) if cluster.active_op else None
            if (
                op_type == "cluster.delete"
                and running is not None
                and running.type == "cluster.delete"
                and self.config.delete_while_deleting_returns_operation
            ):
                if self.config.delete_while_deleting_checks_etag:
                    self._check_mutation(cluster, if_match, check_running=False)
                replay = self._replay_last(ws, key, fingerprint)
                if replay is not None:
                    return replay
                self._remember(ws, key, IdemRec(fingerprint, op_id=running.id, status=202))
                return 202, self.op_json(running)
            self._check_mutation(cluster, if_match)
            if op_type == "cluster.delete" and cluster.delete_blocked_reason:
                raise SimError(
                    422,
                    CODE_FAILED_PRECONDITION,
                    f"FAILED_PRECONDITION: {cluster.delete_blocked_reason}",
                )
            if op_type == "cluster.suspend" and cluster.state != "active":
                raise SimError(
                    422,
                    CODE_FAILED_PRECONDITION,
                    f"FAILED_PRECONDITION: cluster is {cluster.state}, not active",
                )
            if op_type == "cluster.resume" and cluster.state != "suspended":
                raise SimError(
                    422,
                    CODE_FAILED_PRECONDITION,
                    f"FAILED_PRECONDITION: cluster is {cluster.state}, not suspended",
                )
            replay = self._replay_last(ws, key, fingerprint)
            if replay is not None:
                return replay
            before = self.cluster_json(cluster)
            op = self._start_op(op_type, cluster, now, {"type": op_type, "cluster_id": cluster.id})
            self._remember_stale(cluster_id, before, now)
            self._remember(ws, key, IdemRec(fingerprint, op_id=op.id, status=202))
            return 202, self.op_json(op)

    # --- operations API ---------------------------------------------------------------------

    def _op(self, op_id: str, ws: str | None = None, *, any_workspace: bool = False) -> OpRec:
        op = self.ops.get(op_id)
        if op is None or (not any_workspace and (op.forgotten or op.workspace_id != self._ws(ws))):
            raise not_found("operation", op_id)
        return op

    def forget_operation(self, op_id: str, *, forget_key: bool = False) -> dict[str, Any]:
        """The API forgets the operation (as if it expired, or a read lagged): ``GET``,
        ``:wait`` and ``:cancel`` answer 404 and lists omit it, while it runs on (a create still
        makes its cluster). The idempotency key that started it still replays it (the key store
        is separate) unless ``forget_key``: then the same request starts anew."""
        with self.lock:
            op = self._op(op_id, any_workspace=True)
            op.forgotten = True
            keys = [k for k, rec in self.idem.items() if rec.op_id == op.id] if forget_key else []
            for k in keys:
                del self.idem[k]
            return {"id": op.id, "forgotten": True, "keys_forgotten": len(keys)}

    def get_operation(
        self, op_id: str, *, steps: bool = True, ws: str | None = None
    ) -> dict[str, Any]:
        with self.lock:
            op = self._op(op_id, ws)
            self._advance(op, self.clock.now())
            return self.op_json(op, steps=steps)

    def operation_done(self, op_id: str) -> bool:
        with self.lock:
            op = self._op(op_id, any_workspace=True)
            self._advance(op, self.clock.now())
            return op.done

    def seconds_until_change(self, op_id: str) -> float | None:
        """How long until the operation may change by itself: 0 when done, None when it waits
        for a person (approval) or forever (stall)."""
        with self.lock:
            op = self._op(op_id, any_workspace=True)
            now = self.clock.now()
            self._advance(op, now)
            if op.done:
                return 0.0
            step = op.steps[op.idx]
            if step.status == "failed" and step.retry_at is not None:
                return max(0.0, step.retry_at - now)
            sc = self._scenario_for(op, step)
            if sc is not None and sc.mode in ("approval", "stall"):
                if sc.mode == "approval" and step.name in op.approved_at:
                    return 0.0
                return None
            return max(0.0, op.cursor + op.step_seconds - now)

    def cancel_operation(
        self, op_id: str, key: str | None, fingerprint: str, ws: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            ws = self._ws(ws)
            replay = self._replay_first(ws, key, fingerprint)
            if replay is not None:
                return replay
            op = self._op(op_id, ws)
            now = self.clock.now()
            self._advance(op, now)
            if op.done:
                raise SimError(
                    422,
                    CODE_FAILED_PRECONDITION,
                    f"FAILED_PRECONDITION: operation is already {op.state}",
                )
            replay = self._replay_last(ws, key, fingerprint)
            if replay is not None:
                return replay
            if op.cancel_requested_at is None:
                op.cancel_requested_at = now
            self._advance(op, now)
            self._remember(ws, key, IdemRec(fingerprint, op_id=op.id, status=202))
            return 202, self.op_json(op)

    def approve(self, op_id: str, step: str | None) -> dict[str, Any]:
        with self.lock:
            op = self._op(op_id, any_workspace=True)
            now = self.clock.now()
            self._advance(op, now)
            if op.done:
                raise SimError(422, CODE_FAILED_PRECONDITION, "operation is done")
            name = step or op.steps[op.idx].name
            op.approved_at[name] = now
            self._advance(op, now)
            return self.op_json(op)

    def list_operations(
        self,
        limit: int,
        cursor: str | None,
        owner_type: str | None,
        owner_id: str | None,
        ws: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            ws = self._ws(ws)
            self.advance_all()
            before = decode_cursor(cursor) if cursor else None
            items = [
                op
                for op in self.ops.values()
                if op.workspace_id == ws
                and not op.forgotten
                and (
                    owner_type is None or (op.owner_type == owner_type and op.owner_id == owner_id)
                )
                and (before is None or op.seq < before)
            ]
            items.sort(key=lambda op: op.seq, reverse=True)
            page = items[:limit]
            has_more = len(items) > limit
            return {
                "data": [self.op_json(op, steps=False) for op in page],
                "has_more": has_more,
                "next_cursor": encode_cursor(page[-1].seq) if has_more and page else None,
            }

    # --- workspaces -------------------------------------------------------------------------

    def workspace_json(self, ws: str) -> dict[str, Any]:
        return {
            "id": ws,
            "name": f"Simulated {ws}",
            "slug": ws.replace("_", "-"),
            "plan": {"tier": "sim", "billed_by": "platform"},
            "workspace_class": "standard",
            "created_at": int(self.started_at),
            "updated_at": int(self.started_at),
            "etag": "1",
        }

    def list_workspaces(
        self, workspaces: list[str], limit: int, cursor: str | None
    ) -> dict[str, Any]:
        """A ``WorkspaceList`` of ``workspaces`` (the caller's), in the given order."""
        start = decode_cursor(cursor) if cursor else 0
        page = workspaces[start : start + limit]
        has_more = start + limit < len(workspaces)
        return {
            "data": [self.workspace_json(ws) for ws in page],
            "has_more": has_more,
            "next_cursor": encode_cursor(start + limit) if has_more else None,
        }

    # --- admin ------------------------------------------------------------------------------

    def add_scenario(self, scenario: Scenario) -> Scenario:
        with self.lock:
            if scenario.id is None:
                scenario.id = self._scenario_id()
            steps = STEP_NAMES[scenario.operation_type]
            if scenario.step_name is not None and scenario.step_name not in steps:
                raise SimError(
                    422,
                    CODE_INVALID_ARGUMENT,
                    f"unknown step {scenario.step_name!r} for {scenario.operation_type}; "
                    f"steps are {', '.join(steps)}",
                )
            self.scenarios.append(scenario)
            return scenario

    def dump(self) -> dict[str, Any]:
        with self.lock:
            self.advance_all()
            return {
                "clusters": [self.cluster_json(c) for c in self.clusters.values()],
                "deleted_cluster_ids": list(self.deleted),
                "operations": [self.op_json(op) for op in self.ops.values()],
                "scenarios": [s.model_dump() for s in self.scenarios],
                "faults": self.faults.model_dump(),
                "now": self.clock.now(),
            }
