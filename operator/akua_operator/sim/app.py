"""The simulator's ASGI app: the Akua API under ``/v1`` and admin endpoints under ``/_sim``."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from akua_operator.sim.clock import Clock, RealClock
from akua_operator.sim.config import FaultConfig, Scenario, SimConfig
from akua_operator.sim.contract import Contract, ResponseChecker
from akua_operator.sim.limits import (
    BODY_FIELDS,
    CANCEL_IF_MATCH,
    CLUSTER_ID,
    CONTEXT,
    IDEMPOTENCY_KEY,
    IF_MATCH,
    LIST_LIMIT,
    OPERATION_ID,
    WAIT_TIMEOUT,
    Bound,
    FieldSpec,
)
from akua_operator.sim.state import (
    CODE_INTERNAL,
    CODE_INVALID_ARGUMENT,
    CODE_PERMISSION_DENIED,
    CODE_RESOURCE_EXHAUSTED,
    CODE_UNAUTHENTICATED,
    CODE_UNAVAILABLE,
    SimError,
    SimState,
)

__all__ = ["ConnectionDropped", "SimApp", "create_app"]

OWNER_TYPES = frozenset(
    {
        "install",
        "repository_change_request",
        "repository",
        "workspace",
        "machine",
        "cluster",
        "package",
    }
)
JOURNAL_HEADERS = ("idempotency-key", "if-match", "akua-context")


@dataclass(frozen=True)
class _Caller:
    owner: bool  # a workspace owner (may DELETE)
    workspace: str  # the workspace the request acts in
    workspaces: list[str]  # every workspace of the token
    context: str | None  # the akua-context header


# config fields holding tokens: never shown by /_sim/config
_SECRET_CONFIG = {"tokens", "member_tokens", "workspace_tokens", "workspace_member_tokens"}


class ConnectionDropped(Exception):
    """Raised by the app to make the server cut the connection mid-response."""


def _invalid(status: int, message: str, path: list[str]) -> SimError:
    return SimError(status, CODE_INVALID_ARGUMENT, f"INVALID_ARGUMENT: {message}", path=path)


class _Journal:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: list[dict[str, Any]] = []
        self.seq = 0
        self.lock = threading.Lock()

    def add(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            self.entries.append(entry)
            if len(self.entries) > self.limit:
                del self.entries[: len(self.entries) - self.limit]

    def read(self, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.entries if e["seq"] > since]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


class _Violations:
    """Responses that broke the contract or the guide (``validate_responses``)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.entries: list[dict[str, Any]] = []
        self.total = 0
        self.lock = threading.Lock()

    def add(self, entry: dict[str, Any], problems: list[str]) -> None:
        keep = ("seq", "time", "method", "path", "query", "status", "fault", "workspace_id")
        with self.lock:
            self.total += 1
            self.entries.append({**{k: entry.get(k) for k in keep}, "problems": list(problems)})
            if len(self.entries) > self.limit:
                del self.entries[: len(self.entries) - self.limit]

    def read(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.entries]

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.total = 0


@dataclass
class _Fault:
    latency: float = 0.0
    answer_delay: float = 0.0
    error: SimError | None = None
    drop_before: bool = False
    drop_after: bool = False
    name: str | None = None


class _ServerBucket:
    def __init__(self) -> None:
        self.tokens = 0.0
        self.updated: float | None = None
        self.key: tuple[float, int] | None = None

    def take(self, rps: float, burst: int, now: float) -> bool:
        rate = rps if rps > 0 else 1.0
        size = float(burst if burst > 0 else max(1, int(rate)))
        if self.key != (rps, burst) or self.updated is None:
            self.key = (rps, burst)
            self.tokens = size
            self.updated = now
        self.tokens = min(size, self.tokens + max(0.0, now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class SimApp:
    """The simulator: state, journal, faults, and the Starlette app serving them."""

    def __init__(self, config: SimConfig | None = None, *, clock: Clock | None = None) -> None:
        self.config = config or SimConfig()
        self.clock = clock or RealClock()
        self.state = SimState(self.config, self.clock)
        self.journal = _Journal(self.config.journal_max)
        self._bucket = _ServerBucket()
        # validate_responses: every API response checked against the contract and the guide
        self.checker = (
            ResponseChecker(Contract(self.config.contract_path))
            if self.config.validate_responses
            else None
        )
        self.violations = _Violations(self.config.journal_max)
        # cluster id -> kind of write -> {"answered", "accepted", "keys"} (GET /_sim/oracle)
        self._writes: dict[str, dict[str, dict[str, Any]]] = {}
        self.app = Starlette(
            routes=[
                Route(
                    "/v1/{rest:path}",
                    self._api,
                    methods=["GET", "POST", "PATCH", "DELETE", "PUT"],
                ),
                Route("/_sim/{rest:path}", self._admin, methods=["GET", "POST", "DELETE", "PATCH"]),
            ]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    # --- faults -----------------------------------------------------------------------------

    def _decide_fault(self, method: str, path: str) -> _Fault:
        with self.state.lock:
            f = self.state.faults
            if f.methods is not None and method not in {m.upper() for m in f.methods}:
                return _Fault()
            if f.path_contains is not None and f.path_contains not in path:
                return _Fault()
            rng = self.state.fault_rng
            fault = _Fault()
            if f.latency_ms or f.latency_jitter_ms:
                fault.latency = (f.latency_ms + rng.uniform(0, f.latency_jitter_ms)) / 1000.0
            fault.answer_delay = f.answer_delay_ms / 1000.0
            retry_after = {"retry-after": str(f.retry_after_seconds)}
            if (f.rate_limit_rps > 0 or f.rate_limit_burst > 0) and not self._bucket.take(
                f.rate_limit_rps, f.rate_limit_burst, self.clock.now()
            ):
                fault.error = SimError(
                    429,
                    CODE_RESOURCE_EXHAUSTED,
                    "RESOURCE_EXHAUSTED: rate limit exceeded",
                    headers=retry_after,
                )
                fault.name = "rate_limit"
            elif f.error_rate_429 and rng.random() < f.error_rate_429:
                fault.error = SimError(
                    429,
                    CODE_RESOURCE_EXHAUSTED,
                    "RESOURCE_EXHAUSTED: too many requests",
                    headers=retry_after,
                )
                fault.name = "429"
            elif f.error_rate_503 and rng.random() < f.error_rate_503:
                fault.error = SimError(
                    503, CODE_UNAVAILABLE, "UNAVAILABLE: try again later", headers=retry_after
                )
                fault.name = "503"
            elif f.error_rate_500 and rng.random() < f.error_rate_500:
                fault.error = SimError(500, CODE_INTERNAL, "INTERNAL: simulated server error")
                fault.name = "500"
            elif f.drop_before_rate and rng.random() < f.drop_before_rate:
                fault.drop_before = True
                fault.name = "drop_before"
            elif f.drop_rate and rng.random() < f.drop_rate:
                fault.drop_after = True
                fault.name = "drop_after"
            if fault.name is not None and f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    self.state.faults = FaultConfig(
                        stale_read_seconds=f.stale_read_seconds,
                        latency_ms=f.latency_ms,
                        latency_jitter_ms=f.latency_jitter_ms,
                        answer_delay_ms=f.answer_delay_ms,
                        methods=f.methods,
                        path_contains=f.path_contains,
                    )
            return fault

    # --- API --------------------------------------------------------------------------------

    async def _api(self, request: Request) -> Response:
        path = "/" + str(request.path_params["rest"])
        path = path.replace("%3A", ":").replace("%3a", ":")
        method = request.method
        entry: dict[str, Any] = {
            "time": self.clock.now(),
            "method": method,
            "path": path,
            "query": str(request.url.query),
        }
        for header in JOURNAL_HEADERS:
            entry[header.replace("-", "_")] = request.headers.get(header)
        fault = self._decide_fault(method, path)
        entry["fault"] = fault.name
        entry["latency_ms"] = round(fault.latency * 1000, 3)
        if fault.latency > 0:
            await asyncio.sleep(fault.latency)
        if fault.drop_before:
            entry["status"] = None
            self.journal.add(entry)
            return _DropResponse()
        response: Response
        try:
            if fault.error is not None:
                raise fault.error
            status, body = await self._handle(request, method, path)
            response = JSONResponse(body, status_code=status)
        except SimError as err:
            response = JSONResponse(err.body(), status_code=err.status, headers=err.headers)
        entry["workspace_id"] = getattr(request.state, "workspace", None)
        entry["status"] = response.status_code
        problems = self._check_response(method, path, response)
        if problems:
            entry["violations"] = problems
        if fault.answer_delay > 0:
            entry["answer_delay_ms"] = round(fault.answer_delay * 1000, 3)
        self._count_cluster_request(method, path, entry)
        self.journal.add(entry)
        if problems:
            self.violations.add(entry, problems)
        if fault.answer_delay > 0:  # done and journaled; the client does not know yet
            await asyncio.sleep(fault.answer_delay)
        if fault.drop_after:
            return _DropResponse()
        return response

    def _count_cluster_request(self, method: str, path: str, entry: dict[str, Any]) -> None:
        """Per cluster and kind of write: requests answered (any status, injected faults too),
        accepted (2xx), distinct idempotency keys."""
        m = re.fullmatch(r"/clusters/([^/:]+)(?::(suspend|resume))?", path)
        if m is None:
            return
        if m.group(2):
            kind = f"cluster.{m.group(2)}" if method == "POST" else None
        else:
            kind = {"DELETE": "cluster.delete", "PATCH": "cluster.update"}.get(method)
        if kind is None:
            return
        with self.state.lock:
            per = self._writes.setdefault(m.group(1), {})
            rec = per.setdefault(kind, {"answered": 0, "accepted": 0, "keys": set()})
            rec["answered"] += 1
            if 200 <= entry["status"] < 300:
                rec["accepted"] += 1
            rec["keys"].add(entry.get("idempotency_key"))

    def oracle(self) -> dict[str, Any]:
        """What an exactly-once check counts, per cluster: operations started by type (from
        the simulator's state, never forgotten) and, per kind of write, the requests answered,
        those accepted and the distinct idempotency keys they carried (null: none)."""
        with self.state.lock:
            self.state.advance_all()
            out: dict[str, Any] = {}
            for op in sorted(self.state.ops.values(), key=lambda o: o.seq):
                c = out.setdefault(op.cluster_id, {"operations": {}, "writes": {}})
                c["operations"].setdefault(op.type, []).append(
                    {"id": op.id, "state": op.state, "started_at": op.started_at}
                )
            for cid, per in self._writes.items():
                c = out.setdefault(cid, {"operations": {}, "writes": {}})
                for kind, rec in per.items():
                    keys = sorted(rec["keys"], key=lambda k: (k is None, k or ""))
                    c["writes"][kind] = {
                        "answered": rec["answered"],
                        "accepted": rec["accepted"],
                        "keys": keys,
                    }
            return {"clusters": out}

    def _check_response(self, method: str, path: str, response: Response) -> list[str]:
        if self.checker is None:
            return []
        headers = dict(response.headers.items())
        try:
            body = bytes(response.body)
            return self.checker.check(method, path, response.status_code, headers, body)
        except Exception as exc:  # noqa: BLE001 - a checker bug is itself a finding
            return [f"the response checker failed: {type(exc).__name__}: {exc}"]

    def _auth(self, request: Request) -> _Caller:
        """Check the bearer token and akua-context: who calls, in which workspace.

        The token's workspaces come from the config (``SimConfig.workspaces_of``); an
        ``akua-context`` naming one of them selects it, naming another is 403; without one the
        token's own (first) workspace is used.
        """
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise SimError(401, CODE_UNAUTHENTICATED, "UNAUTHENTICATED: missing bearer token")
        found = self.config.workspaces_of(token)
        if found is None:
            raise SimError(401, CODE_UNAUTHENTICATED, "UNAUTHENTICATED: invalid token")
        workspaces, owner = found
        context = request.headers.get("akua-context")
        workspace = workspaces[0]
        if context is not None:
            if not CONTEXT.holds(len(context)):
                raise _invalid(
                    400,
                    f"akua-context must be {CONTEXT.describe()} characters",
                    ["header", "akua-context"],
                )
            if context in workspaces:
                workspace = context
            elif self.config.enforce_context:
                raise SimError(
                    403, CODE_PERMISSION_DENIED, "PERMISSION_DENIED: no access to this workspace"
                )
        return _Caller(owner=owner, workspace=workspace, workspaces=workspaces, context=context)

    @staticmethod
    def _header(request: Request, name: str, bound: Bound) -> str | None:
        value = request.headers.get(name)
        if value is None:
            return None
        if not bound.holds(len(value)):
            raise _invalid(400, f"{name} must be {bound.describe()} characters", ["header", name])
        return value

    def _if_match(self, request: Request) -> str:
        value = request.headers.get("if-match")
        if value is None:
            raise _invalid(
                self.config.missing_if_match_status,
                "if-match header is required",
                ["header", "if-match"],
            )
        if not IF_MATCH.holds(len(value)):
            raise _invalid(
                400, f"if-match must be {IF_MATCH.describe()} characters", ["header", "if-match"]
            )
        return value

    async def _body(
        self, request: Request, spec: dict[str, FieldSpec], required: set[str]
    ) -> dict[str, Any]:
        raw = await request.body()
        status = self.config.body_validation_status
        if not raw.strip():
            data: Any = {}
        else:
            try:
                data = json.loads(raw)
            except ValueError as exc:
                raise _invalid(400, "request body is not valid JSON", ["body"]) from exc
        if not isinstance(data, dict):
            raise _invalid(status, "request body must be a JSON object", ["body"])
        for key in data:
            if key not in spec:
                raise _invalid(status, f"unknown field {key!r}", ["body", str(key)])
        for key in sorted(required):
            if key not in data:
                raise _invalid(status, f"{key} is required", ["body", key])
        for key, value in data.items():
            field = spec[key]
            if not isinstance(value, str):
                raise _invalid(status, f"{key} must be a string", ["body", key])
            if field.length.low is not None and len(value) < field.length.low:
                raise _invalid(status, f"{key} is too short", ["body", key])
            if field.length.high is not None and len(value) > field.length.high:
                raise _invalid(status, f"{key} is too long", ["body", key])
            if field.enum is not None and value not in field.enum:
                raise _invalid(
                    status, f"{key} must be one of {', '.join(sorted(field.enum))}", ["body", key]
                )
        return data

    @staticmethod
    def _int_query(request: Request, name: str, bound: Bound) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            assert bound.default is not None
            return bound.default
        try:
            value: int | None = int(raw)
        except ValueError:
            value = None
        if value is None or not bound.holds(value):
            raise _invalid(400, f"{name} must be an integer {bound.describe()}", ["query", name])
        return value

    @staticmethod
    def _id(value: str, bound: Bound) -> str:
        if not bound.holds(len(value)):
            raise _invalid(400, f"id must be {bound.describe()} characters", ["path", "id"])
        return value

    async def _handle(self, request: Request, method: str, path: str) -> tuple[int, Any]:
        caller = self._auth(request)
        request.state.workspace = ws = caller.workspace
        state = self.state
        key_bound = IDEMPOTENCY_KEY
        if path == "/clusters":
            if method == "GET":
                limit = self._int_query(request, "limit", LIST_LIMIT)
                return 200, state.list_clusters(limit, request.query_params.get("cursor"), ws)
            if method == "POST":
                key = self._header(request, "idempotency-key", key_bound)
                body = await self._body(
                    request, BODY_FIELDS[("/clusters", "post")], {"name", "region_id"}
                )
                fp = state.fingerprint(method, path, body)
                return state.create_cluster(body, key, fp, ws)
        elif path == "/clusters:import":
            if method == "POST":
                key = self._header(request, "idempotency-key", key_bound)
                body = await self._body(
                    request,
                    BODY_FIELDS[("/clusters:import", "post")],
                    {"name", "region_id", "kubeconfig"},
                )
                fp = state.fingerprint(method, path, body)
                return state.import_cluster(body, key, fp, ws)
        elif m := re.fullmatch(r"/clusters/([^/:]+)", path):
            cid = self._id(m.group(1), CLUSTER_ID)
            if method == "GET":
                return 200, state.get_cluster(cid, ws)
            if method == "PATCH":
                key = self._header(request, "idempotency-key", key_bound)
                if_match = self._if_match(request)
                body = await self._body(request, BODY_FIELDS[("/clusters/{id}", "patch")], set())
                fp = state.fingerprint(method, path, body)
                return state.update_cluster(cid, body, if_match, key, fp, ws=ws)
            if method == "DELETE":
                key = self._header(request, "idempotency-key", key_bound)
                if_match = self._if_match(request)
                fp = state.fingerprint(method, path, None)
                return state.cluster_operation(
                    "cluster.delete", cid, if_match, key, fp, owner=caller.owner, ws=ws
                )
        elif m := re.fullmatch(r"/clusters/([^/:]+):(suspend|resume)", path):
            cid = self._id(m.group(1), CLUSTER_ID)
            if method == "POST":
                key = self._header(request, "idempotency-key", key_bound)
                if_match = self._if_match(request)
                fp = state.fingerprint(method, path, None)
                return state.cluster_operation(
                    f"cluster.{m.group(2)}", cid, if_match, key, fp, ws=ws
                )
        elif path == "/operations":
            if method == "GET":
                limit = self._int_query(request, "limit", LIST_LIMIT)
                owner_type = request.query_params.get("owner_type")
                owner_id = request.query_params.get("owner_id")
                if owner_type is not None and owner_type not in OWNER_TYPES:
                    raise _invalid(400, "unknown owner_type", ["query", "owner_type"])
                if (owner_type is None) != (owner_id is None):
                    missing = "owner_id" if owner_id is None else "owner_type"
                    raise _invalid(400, "owner_type and owner_id go together", ["query", missing])
                return 200, state.list_operations(
                    limit, request.query_params.get("cursor"), owner_type, owner_id, ws
                )
        elif m := re.fullmatch(r"/operations/([^/:]+)", path):
            if method == "GET":
                return 200, state.get_operation(self._id(m.group(1), OPERATION_ID), ws=ws)
        elif m := re.fullmatch(r"/operations/([^/:]+):(wait|cancel)", path):
            op_id = self._id(m.group(1), OPERATION_ID)
            if method == "POST" and m.group(2) == "wait":
                timeout = self._int_query(request, "timeout", WAIT_TIMEOUT)
                return 200, await self._wait(op_id, timeout, ws)
            if method == "POST":
                key = self._header(request, "idempotency-key", key_bound)
                self._header(request, "if-match", CANCEL_IF_MATCH)  # optional, not compared
                fp = state.fingerprint(method, path, None)
                return state.cancel_operation(op_id, key, fp, ws)
        elif path == "/workspaces" and method == "GET":
            limit = self._int_query(request, "limit", LIST_LIMIT)
            # a workspace-scoped request sees only that workspace (the contract)
            mine = [caller.workspace] if caller.context is not None else caller.workspaces
            return 200, state.list_workspaces(mine, limit, request.query_params.get("cursor"))
        raise SimError(404, 5, f"NOT_FOUND: no route for {method} {path}")

    async def _wait(self, op_id: str, seconds: int, ws: str) -> dict[str, Any]:
        self.state.get_operation(op_id, ws=ws)  # 404 unless it exists in the caller's workspace
        deadline = self.clock.now() + seconds
        while not self.state.operation_done(op_id):
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                break
            # sleep until the next step boundary (or the deadline), but wake up regularly to
            # notice changes made by other requests (cancel, approval)
            until_change = self.state.seconds_until_change(op_id)
            delay = min(remaining, self.config.wait_poll_seconds)
            if until_change is not None:
                delay = min(delay, until_change)
            await self.clock.sleep(max(delay, 0.001))
        return self.state.get_operation(op_id, steps=self.config.wait_includes_steps, ws=ws)

    # --- admin ------------------------------------------------------------------------------

    async def _admin(self, request: Request) -> Response:
        path = "/" + str(request.path_params["rest"])
        path = path.replace("%3A", ":").replace("%3a", ":")
        try:
            status, body = await self._admin_handle(request, request.method, path)
        except SimError as err:
            return JSONResponse(err.body(), status_code=err.status)
        except ValidationError as err:
            return JSONResponse(
                {
                    "success": False,
                    "errors": [
                        {
                            "code": CODE_INVALID_ARGUMENT,
                            "message": str(e["msg"]),
                            "path": [str(p) for p in e["loc"]],
                        }
                        for e in err.errors(include_url=False, include_input=False)
                    ],
                    "result": {},
                },
                status_code=422,
            )
        return JSONResponse(body, status_code=status)

    async def _json(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _invalid(400, "body is not valid JSON", ["body"]) from exc
        if not isinstance(data, dict):
            raise _invalid(422, "body must be a JSON object", ["body"])
        return data

    async def _admin_handle(self, request: Request, method: str, path: str) -> tuple[int, Any]:
        state = self.state
        if path == "/health":
            return 200, {"ok": True}
        if path == "/reset" and method == "POST":
            state.reset()
            self.journal.clear()
            self.violations.clear()
            with state.lock:
                self._writes.clear()
            self._bucket = _ServerBucket()
            return 200, {"ok": True}
        if path == "/state" and method == "GET":
            return 200, state.dump()
        if path == "/workspaces" and method == "GET":
            return 200, {"data": self.config.all_workspaces(), "default": self.config.workspace_id}
        if path == "/clusters" and method == "POST":
            data = await self._json(request)
            name = data.get("name")
            if not isinstance(name, str) or not name:
                raise _invalid(422, "name is required", ["body", "name"])
            ws = data.get("workspace_id")
            if ws is not None and not (isinstance(ws, str) and CONTEXT.holds(len(ws))):
                raise _invalid(
                    422, "workspace_id must be 1-53 characters", ["body", "workspace_id"]
                )
            return 201, state.seed_cluster(
                name=name,
                state=str(data.get("state", "active")),
                provider=str(data.get("provider", "managed_kaas")),
                cluster_id=data.get("id"),
                region_id=str(data.get("region_id", "reg_sim")),
                delete_blocked_reason=data.get("delete_blocked_reason"),
                workspace_id=ws,
            )
        if (m := re.fullmatch(r"/clusters/([^/]+)", path)) and method == "PATCH":
            data = await self._json(request)
            return 200, state.set_delete_blocker(m.group(1), data.get("delete_blocked_reason"))
        if path == "/scenarios":
            if method == "GET":
                with state.lock:
                    return 200, {"data": [s.model_dump() for s in state.scenarios]}
            if method == "POST":
                scenario = Scenario.model_validate(await self._json(request))
                return 201, state.add_scenario(scenario).model_dump()
            if method == "DELETE":
                with state.lock:
                    state.scenarios.clear()
                return 200, {"ok": True}
        if path == "/faults":
            if method == "GET":
                with state.lock:
                    return 200, state.faults.model_dump()
            if method in ("POST", "PATCH"):
                data = await self._json(request)
                with state.lock:
                    base = state.faults.model_dump() if method == "PATCH" else {}
                    state.faults = FaultConfig.model_validate({**base, **data})
                    self._bucket = _ServerBucket()
                    return 200, state.faults.model_dump()
            if method == "DELETE":
                with state.lock:
                    state.faults = FaultConfig()
                return 200, state.faults.model_dump()
        if path == "/oracle" and method == "GET":
            return 200, self.oracle()
        if path == "/violations":
            if method == "GET":
                return 200, {
                    "validating": self.checker is not None,
                    "total": self.violations.total,
                    "data": self.violations.read(),
                }
            if method == "DELETE":
                self.violations.clear()
                return 200, {"ok": True}
        if path == "/journal":
            if method == "GET":
                since = int(request.query_params.get("since", "0") or 0)
                return 200, {"data": self.journal.read(since)}
            if method == "DELETE":
                self.journal.clear()
                return 200, {"ok": True}
        if path == "/config":
            if method == "GET":
                return 200, self.config.model_dump(exclude=_SECRET_CONFIG)
            if method == "PATCH":
                data = await self._json(request)
                allowed = {
                    "step_seconds",
                    "step_seconds_by_type",
                    "stale_read_seconds",
                    "validate_responses",
                }
                unknown = set(data) - allowed
                if unknown:
                    raise _invalid(422, f"cannot change {sorted(unknown)} at run time", ["body"])
                with state.lock:
                    updated = SimConfig.model_validate({**self.config.model_dump(), **data})
                    if updated.validate_responses and self.checker is None:
                        self.checker = ResponseChecker(Contract(updated.contract_path))
                    if not updated.validate_responses:
                        self.checker = None
                    for key in data:
                        setattr(self.config, key, getattr(updated, key))
                return 200, self.config.model_dump(exclude=_SECRET_CONFIG)
        if path == "/clock" and method == "POST":
            data = await self._json(request)
            advance: Callable[[float], float] | None = getattr(self.clock, "advance", None)
            if advance is None:
                raise _invalid(422, "the simulator runs on the real clock", ["body"])
            try:
                return 200, {"now": advance(float(data.get("seconds", 0)))}
            except (TypeError, ValueError) as exc:
                raise _invalid(422, "seconds must be a number >= 0", ["body", "seconds"]) from exc
        if (m := re.fullmatch(r"/operations/([^/:]+):approve", path)) and method == "POST":
            data = await self._json(request)
            return 200, state.approve(m.group(1), data.get("step"))
        if (m := re.fullmatch(r"/operations/([^/:]+):forget", path)) and method == "POST":
            data = await self._json(request)
            forget_key = data.get("forget_key", False)
            if not isinstance(forget_key, bool):
                raise _invalid(422, "forget_key must be a boolean", ["body", "forget_key"])
            return 200, state.forget_operation(m.group(1), forget_key=forget_key)
        raise SimError(404, 5, f"NOT_FOUND: no admin route {method} {path}")


class _DropResponse(Response):
    """Starts a response and then dies, so the client sees a connection cut mid-body."""

    def __init__(self) -> None:
        super().__init__(content=b"", status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"id', "more_body": True})
        raise ConnectionDropped("simulated dropped connection")


def create_app(config: SimConfig | None = None, *, clock: Clock | None = None) -> SimApp:
    """The simulator as an ASGI app (``SimApp`` is callable; ``.state``, ``.journal`` exposed)."""
    return SimApp(config, clock=clock)


AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]
