"""Async client for the Akua API.

One ``AkuaClient`` per process, shared by every resource: one ``httpx.AsyncClient`` (connection
pool), one prioritised budget (:class:`~akua_operator.akua.budget.PriorityBudget`: a connection
slot and a rate token granted together), one set of counters. Credentials are chosen per call, so
resources may use different tokens and workspaces (``akua-context``).

Safety rules:

* A call is repeated (capped exponential backoff with full jitter, honouring ``Retry-After``) after
  a transport error, a 429 or a 5xx only when repeating it is safe: reads, ``:wait`` and writes
  that carry an ``idempotency-key``. A write without a key is never repeated.
* No request is sent before a server's ``Retry-After`` has passed, and the wait holds for every
  call made with the same token (whatever ``akua-context`` it names), not only the one that got
  it: a later call waits for it inside the call when at most ``retry_after_cap`` seconds are
  left, else raises ``AkuaRetryAfterPending`` (a ``AkuaRateLimited``, nothing sent) whose
  ``retry_after`` is the time left. A ``Retry-After`` longer than ``retry_after_cap`` ends the
  call at once with the server's error (its ``retry_after`` set): the caller requeues no sooner.
* Errors are the typed tree of :mod:`akua_operator.akua.errors`; the token never appears in a
  message, and bodies are cut to a safe length.
* A body that is not JSON or does not match the contract raises ``AkuaResponseError``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from akua_operator.akua.budget import (
    LONG_POLL_RESERVE,
    Priority,
    PriorityBudget,
    default_priority,
)
from akua_operator.akua.errors import (
    AkuaError,
    AkuaHTTPError,
    AkuaResponseError,
    AkuaRetryAfterPending,
    AkuaTimeout,
    AkuaTransportError,
    error_class_for_status,
    safe_cause,
    safe_text,
)
from akua_operator.akua.metrics import ClientStats
from akua_operator.akua.models import (
    ApiErrorResponse,
    Cluster,
    ClusterList,
    CreateClusterRequest,
    ImportClusterRequest,
    Operation,
    OperationList,
    UpdateClusterRequest,
    WorkspaceList,
)
from akua_operator.akua.retry import RetryAfterPauses, RetryPolicy, parse_retry_after

__all__ = ["DEFAULT_BASE_URL", "AkuaClient", "ClientConfig", "Credentials", "tls_context"]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.akua.dev/v1"
WAIT_TIMEOUT_MIN = 1
WAIT_TIMEOUT_MAX = 60

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class Credentials:
    """Who a call acts as: a bearer token and, for broad tokens, the workspace.

    ``context`` is sent as ``akua-context`` when set.
    """

    token: SecretStr
    context: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.token, SecretStr):  # tolerate a plain str, keep it secret anyway
            object.__setattr__(self, "token", SecretStr(str(self.token)))
        if self.context is not None and not 1 <= len(self.context) <= 53:
            raise ValueError("akua-context must be 1 to 53 characters")

    def __repr__(self) -> str:
        return f"Credentials(token=SecretStr('**********'), context={self.context!r})"


@dataclass(frozen=True)
class ClientConfig:
    """Settings of an ``AkuaClient``; every timing in seconds."""

    base_url: str = DEFAULT_BASE_URL
    timeout: float = 15.0  # read/write timeout of ordinary calls
    connect_timeout: float = 5.0
    pool_timeout: float = 10.0
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 120.0
    rate: float = 20.0  # requests per second over all resources; <= 0 disables the limit
    burst: int = 40
    # A :wait long poll holds a connection for up to its server-side timeout (5 s by default),
    # so sustaining `rate` long polls per second needs about rate x 5 = 100 connections; 50
    # capped long polls at 10/s in the benchmark (docs/performance.md). 200 leaves headroom.
    max_connections: int = 200
    # Connection slots :wait long polls may never take (PriorityBudget), so ordinary calls
    # always find one.
    long_poll_reserve: int = LONG_POLL_RESERVE
    wait_timeout_margin: float = 10.0  # :wait read timeout = server-side timeout + this margin
    user_agent: str = "akua-operator/0.1"
    extra_headers: Mapping[str, str] = field(default_factory=dict)
    #: A PEM file of CA certificates trusted IN ADDITION to the system's and certifi's roots
    #: (``--ca-file``, e.g. a corporate CA of a TLS-intercepting proxy). None: the defaults only.
    ca_file: str | None = None


_UNTRUSTED_HINT = (
    " (the Akua API's TLS certificate is not signed by a trusted CA: give the CA's PEM file "
    "with --ca-file / AKUA_CA_FILE)"
)


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The TLS context of the Akua client: the system's roots and certifi's (httpx's default),
    plus every certificate of the PEM file ``ca_file`` when given.

    Raises ``ValueError`` with a sentence naming the file when it is missing, unreadable or holds
    no PEM certificate (the operator refuses to start rather than fail every call later).
    """
    ctx = ssl.create_default_context()  # verifies hostnames; loads the system's roots
    try:
        import certifi  # httpx's own trust store (a dependency of httpx)

        ctx.load_verify_locations(cafile=certifi.where())
    except (ImportError, OSError, ssl.SSLError):  # pragma: no cover - httpx ships certifi
        pass
    if ca_file:
        try:
            with open(ca_file, encoding="ascii", errors="replace") as fh:
                pem = fh.read()
        except OSError as exc:
            raise ValueError(
                f"--ca-file {ca_file}: cannot read it: {exc.strerror or exc}"
            ) from None
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError(f"--ca-file {ca_file}: no PEM certificate in it (BEGIN CERTIFICATE)")
        try:
            ctx.load_verify_locations(cadata=pem)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"--ca-file {ca_file}: not a valid PEM CA bundle: {exc}") from None
    return ctx


class AkuaClient:
    """The shared async client; see the module docstring for the retry and error rules."""

    def __init__(
        self,
        config: ClientConfig | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        stats: ClientStats | None = None,
    ) -> None:
        self.config = config or ClientConfig()
        self._base = self.config.base_url.rstrip("/")
        self._sleep = sleep or asyncio.sleep
        self._clock = clock or time.monotonic
        self.stats = stats or ClientStats()
        self.retry_policy = RetryPolicy(
            max_retries=self.config.max_retries,
            base=self.config.backoff_base,
            cap=self.config.backoff_cap,
            retry_after_cap=self.config.retry_after_cap,
            rng=rng or random.Random(),  # noqa: S311 - jitter, not crypto
        )
        self.retry_after_pauses = RetryAfterPauses()
        #: The shared Akua budget: every attempt holds one of its grants (slot + token).
        self.budget = PriorityBudget(
            self.config.rate,
            self.config.burst,
            self.config.max_connections,
            long_reserve=self.config.long_poll_reserve,
            clock=self._clock,
            sleep=self._sleep,
        )
        budget = self.budget
        self.stats.waiting_source = lambda: {p.name.lower(): budget.waiting(p) for p in Priority}
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self._timeout(self.config.timeout),
            limits=httpx.Limits(
                max_connections=self.config.max_connections,
                max_keepalive_connections=self.config.max_connections,
            ),
            follow_redirects=False,
            headers={"accept": "application/json", "user-agent": self.config.user_agent},
            verify=tls_context(self.config.ca_file) if self.config.ca_file else True,
        )

    # --- lifecycle --------------------------------------------------------------------------

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- clusters ---------------------------------------------------------------------------

    async def get_cluster(
        self, cluster_id: str, *, creds: Credentials, priority: Priority | None = None
    ) -> Cluster:
        return await self._call(
            "GET",
            "/clusters/{id}",
            {"id": cluster_id},
            creds=creds,
            priority=priority,
            model=Cluster,
        )

    async def list_clusters(
        self,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> ClusterList:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return await self._call(
            "GET", "/clusters", {}, creds=creds, priority=priority, params=params, model=ClusterList
        )

    async def create_cluster(
        self,
        body: CreateClusterRequest,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        idempotency_key: str,
    ) -> Operation:
        return await self._call(
            "POST",
            "/clusters",
            {},
            creds=creds,
            priority=priority,
            body=body.to_json(),
            idempotency_key=idempotency_key,
            model=Operation,
        )

    async def import_cluster(
        self,
        body: ImportClusterRequest,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        idempotency_key: str,
    ) -> Cluster:
        return await self._call(
            "POST",
            "/clusters:import",
            {},
            creds=creds,
            priority=priority,
            body=body.to_json(),
            idempotency_key=idempotency_key,
            secrets=(body.kubeconfig.get_secret_value(),),
            model=Cluster,
        )

    async def update_cluster(
        self,
        cluster_id: str,
        body: UpdateClusterRequest,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        if_match: str,
        idempotency_key: str | None = None,
    ) -> Cluster:
        secrets = (body.kubeconfig.get_secret_value(),) if body.kubeconfig else ()
        return await self._call(
            "PATCH",
            "/clusters/{id}",
            {"id": cluster_id},
            creds=creds,
            priority=priority,
            body=body.to_json(),
            if_match=if_match,
            idempotency_key=idempotency_key,
            secrets=secrets,
            model=Cluster,
        )

    async def delete_cluster(
        self,
        cluster_id: str,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        if_match: str,
        idempotency_key: str,
    ) -> Operation:
        return await self._call(
            "DELETE",
            "/clusters/{id}",
            {"id": cluster_id},
            creds=creds,
            priority=priority,
            if_match=if_match,
            idempotency_key=idempotency_key,
            model=Operation,
        )

    async def suspend_cluster(
        self,
        cluster_id: str,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        if_match: str,
        idempotency_key: str,
    ) -> Operation:
        return await self._call(
            "POST",
            "/clusters/{id}:suspend",
            {"id": cluster_id},
            creds=creds,
            priority=priority,
            if_match=if_match,
            idempotency_key=idempotency_key,
            model=Operation,
        )

    async def resume_cluster(
        self,
        cluster_id: str,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        if_match: str,
        idempotency_key: str,
    ) -> Operation:
        return await self._call(
            "POST",
            "/clusters/{id}:resume",
            {"id": cluster_id},
            creds=creds,
            priority=priority,
            if_match=if_match,
            idempotency_key=idempotency_key,
            model=Operation,
        )

    # --- operations -------------------------------------------------------------------------

    async def get_operation(
        self, operation_id: str, *, creds: Credentials, priority: Priority | None = None
    ) -> Operation:
        return await self._call(
            "GET",
            "/operations/{id}",
            {"id": operation_id},
            creds=creds,
            priority=priority,
            model=Operation,
        )

    async def wait_operation(
        self,
        operation_id: str,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        timeout: int = 30,  # noqa: ASYNC109
    ) -> Operation:
        """Long-poll until the operation is done or ``timeout`` s (1..60) pass; check ``done``."""
        timeout = max(WAIT_TIMEOUT_MIN, min(WAIT_TIMEOUT_MAX, int(timeout)))
        return await self._call(
            "POST",
            "/operations/{id}:wait",
            {"id": operation_id},
            creds=creds,
            priority=priority,
            params={"timeout": timeout},
            safe=True,
            read_timeout=timeout + self.config.wait_timeout_margin,
            model=Operation,
        )

    async def cancel_operation(
        self,
        operation_id: str,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        idempotency_key: str | None = None,
    ) -> Operation:
        return await self._call(
            "POST",
            "/operations/{id}:cancel",
            {"id": operation_id},
            creds=creds,
            priority=priority,
            idempotency_key=idempotency_key,
            model=Operation,
        )

    async def list_operations(
        self,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        owner_type: str | None = None,
        owner_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> OperationList:
        if (owner_type is None) != (owner_id is None):
            raise ValueError("owner_type and owner_id go together")
        params: dict[str, str | int] = {"limit": limit}
        if owner_type is not None and owner_id is not None:
            params["owner_type"] = owner_type
            params["owner_id"] = owner_id
        if cursor is not None:
            params["cursor"] = cursor
        return await self._call(
            "GET",
            "/operations",
            {},
            creds=creds,
            priority=priority,
            params=params,
            model=OperationList,
        )

    # --- workspaces -------------------------------------------------------------------------

    async def list_workspaces(
        self,
        *,
        creds: Credentials,
        priority: Priority | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> WorkspaceList:
        """The workspaces ``creds`` reach (only the ``akua-context`` one when it is set)."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return await self._call(
            "GET",
            "/workspaces",
            {},
            creds=creds,
            priority=priority,
            params=params,
            model=WorkspaceList,
        )

    # --- machinery --------------------------------------------------------------------------

    def _timeout(self, read: float) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.config.connect_timeout,
            read=read,
            write=self.config.timeout,
            pool=self.config.pool_timeout,
        )

    @staticmethod
    def _parse(model: type[_M], data: Any, endpoint: str, secrets: tuple[str, ...]) -> _M:
        try:
            return model.model_validate(data)
        except RecursionError:
            raise AkuaResponseError(
                f"{endpoint}: response nests too deeply", endpoint=endpoint
            ) from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
                for err in exc.errors(include_input=False, include_url=False)[:5]
            )
            raise AkuaResponseError(
                safe_text(f"{endpoint}: response does not match the contract: {problems}", secrets),
                endpoint=endpoint,
            ) from safe_cause(exc, secrets)

    async def _call(
        self,
        method: str,
        template: str,
        path_args: Mapping[str, str],
        *,
        model: type[_M],
        creds: Credentials,
        priority: Priority | None = None,
        params: Mapping[str, str | int] | None = None,
        body: dict[str, Any] | None = None,
        if_match: str | None = None,
        idempotency_key: str | None = None,
        safe: bool | None = None,
        read_timeout: float | None = None,
        secrets: tuple[str, ...] = (),
    ) -> _M:
        """Send one logical call (with retries when safe) and return the parsed body.

        ``priority`` is the call's class in the Akua budget (:mod:`akua_operator.akua.budget`);
        None means the endpoint's default class.
        """
        endpoint = f"{method} {template}"
        priority = default_priority(method, template) if priority is None else priority
        path = template
        for name, value in path_args.items():
            if not value:
                raise ValueError(f"{name} must not be empty")
            path = path.replace("{" + name + "}", quote(value, safe=""))
        url = self._base + path
        token = creds.token.get_secret_value()
        all_secrets = (token, *secrets)
        headers = {"authorization": f"Bearer {token}", **self.config.extra_headers}
        if creds.context:
            headers["akua-context"] = creds.context
        if if_match is not None:
            headers["if-match"] = if_match
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 64:
                raise ValueError("idempotency-key must be 1 to 64 characters")
            headers["idempotency-key"] = idempotency_key
        if safe is None:
            safe = method == "GET" or idempotency_key is not None
        timeout = self._timeout(read_timeout if read_timeout is not None else self.config.timeout)

        pause_key = RetryAfterPauses.key(token, creds.context)
        is_long = template.endswith(":wait")
        attempt = 0
        while True:
            await self._respect_retry_after(pause_key, endpoint)
            error: AkuaError | None = None
            async with self.budget.grant(priority, long=is_long) as waited:
                self.stats.rate_limited(waited)
                self.stats.budget_waited(priority.name.lower(), waited)
                if self.retry_after_pauses.remaining(pause_key, self._clock()) > 0:
                    continue  # a Retry-After arrived while this call waited for the budget
                try:
                    data = await self._attempt(
                        method=method,
                        url=url,
                        endpoint=endpoint,
                        headers=headers,
                        params=params,
                        body=body,
                        http_timeout=timeout,
                        secrets=all_secrets,
                    )
                except AkuaError as exc:
                    error = exc
            if error is None:
                break
            # the grant (its connection slot) is given back: the backoff below holds none
            retry_after = error.retry_after if isinstance(error, AkuaHTTPError) else None
            if retry_after is not None and retry_after > 0:
                self.retry_after_pauses.pause(pause_key, self._clock() + retry_after)
            if not (
                safe
                and error.retryable
                and attempt < self.retry_policy.max_retries
                and self.retry_policy.waits_in_call(retry_after)
            ):
                raise error
            delay = self.retry_policy.backoff(attempt, retry_after)
            log.info(
                "Akua %s failed (%s), retry %d/%d in %.2fs",
                endpoint,
                type(error).__name__,
                attempt + 1,
                self.retry_policy.max_retries,
                delay,
            )
            self.stats.count_retry(endpoint)
            attempt += 1
            await self._sleep(delay)
        return self._parse(model, data, endpoint, all_secrets)

    async def _respect_retry_after(self, key: tuple[str, str | None], endpoint: str) -> None:
        """Wait until the server's ``Retry-After`` for these credentials has passed, or raise
        ``AkuaRetryAfterPending`` (nothing sent) when more is left than ``retry_after_cap``."""
        while (remaining := self.retry_after_pauses.remaining(key, self._clock())) > 0:
            if not self.retry_policy.waits_in_call(remaining):
                raise AkuaRetryAfterPending(
                    f"{endpoint}: not sent: Akua asked these credentials to wait "
                    f"{remaining:.0f}s more (Retry-After)",
                    status=429,
                    endpoint=endpoint,
                    retry_after=remaining,
                )
            log.info("Akua %s waits %.2fs for an earlier Retry-After", endpoint, remaining)
            await self._sleep(remaining)

    async def _attempt(
        self,
        *,
        method: str,
        url: str,
        endpoint: str,
        headers: dict[str, str],
        params: Mapping[str, str | int] | None,
        body: dict[str, Any] | None,
        http_timeout: httpx.Timeout,
        secrets: tuple[str, ...],
    ) -> Any:
        started = self._clock()
        try:
            response = await self._http.request(
                method, url, headers=headers, params=params, json=body, timeout=http_timeout
            )
        except httpx.TimeoutException as exc:
            self.stats.observe(endpoint, "timeout", self._clock() - started)
            raise AkuaTimeout(
                safe_text(f"{endpoint}: timed out ({type(exc).__name__})", secrets),
                endpoint=endpoint,
            ) from safe_cause(exc, secrets)
        except httpx.TransportError as exc:
            self.stats.observe(endpoint, "transport_error", self._clock() - started)
            hint = _UNTRUSTED_HINT if "CERTIFICATE_VERIFY_FAILED" in str(exc) else ""
            raise AkuaTransportError(
                safe_text(f"{endpoint}: {type(exc).__name__}: {exc}{hint}", secrets),
                endpoint=endpoint,
            ) from safe_cause(exc, secrets)
        except httpx.RequestError as exc:  # e.g. content decoding
            self.stats.observe(endpoint, "transport_error", self._clock() - started)
            raise AkuaResponseError(
                safe_text(f"{endpoint}: {type(exc).__name__}: {exc}", secrets), endpoint=endpoint
            ) from safe_cause(exc, secrets)
        self.stats.observe(endpoint, str(response.status_code), self._clock() - started)

        if 200 <= response.status_code < 300:
            try:
                return response.json()
            except (ValueError, RecursionError) as exc:
                raise AkuaResponseError(
                    safe_text(
                        f"{endpoint}: HTTP {response.status_code} body is not JSON: "
                        f"{response.text}",
                        secrets,
                    ),
                    endpoint=endpoint,
                    status=response.status_code,
                    body=safe_text(response.text, secrets),
                ) from safe_cause(exc, secrets)
        raise self._http_error(response, endpoint, secrets)

    @staticmethod
    def _http_error(
        response: httpx.Response, endpoint: str, secrets: tuple[str, ...]
    ) -> AkuaHTTPError:
        status = response.status_code
        text = safe_text(response.text, secrets)
        code: int | None = None
        metadata: dict[str, str] = {}
        path: list[str] | None = None
        message = text or response.reason_phrase or f"HTTP {status}"
        try:
            envelope = ApiErrorResponse.model_validate(response.json())
        except (ValueError, ValidationError, RecursionError):
            envelope = None
        if envelope is not None and envelope.errors:
            first = envelope.errors[0]
            code = first.code
            message = safe_text("; ".join(e.message for e in envelope.errors), secrets)
            metadata = {k: safe_text(v, secrets) for k, v in (first.metadata or {}).items()}
            path = first.path
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        cls = error_class_for_status(status)
        return cls(
            message,
            status=status,
            code=code,
            metadata=metadata,
            path=path,
            request_id=response.headers.get("x-request-id"),
            endpoint=endpoint,
            retry_after=retry_after,
            body=text,
        )
