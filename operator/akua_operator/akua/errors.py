"""The typed error tree of the Akua client.

Every error chains the original exception (``raise ... from``). Messages never contain the API
token (the client redacts any echo of it) and response bodies are cut to ``MAX_BODY_CHARS``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = [
    "MAX_BODY_CHARS",
    "AkuaBadRequest",
    "AkuaConflict",
    "AkuaError",
    "AkuaForbidden",
    "AkuaHTTPError",
    "AkuaNotFound",
    "AkuaRateLimited",
    "AkuaResponseError",
    "AkuaRetryAfterPending",
    "AkuaServerError",
    "AkuaTimeout",
    "AkuaTransportError",
    "AkuaUnauthorized",
    "AkuaUnprocessable",
    "RedactedCause",
    "error_class_for_status",
    "safe_cause",
    "safe_text",
]

MAX_BODY_CHARS = 512
_REDACTED = "<redacted>"


def safe_text(text: str, secrets: Iterable[str] = (), limit: int = MAX_BODY_CHARS) -> str:
    """``text`` with every secret replaced and cut to ``limit`` characters."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    if len(text) > limit:
        suffix = "...[truncated]"
        text = text[: max(0, limit - len(suffix))] + suffix
    return text


class RedactedCause(Exception):
    """Stands in (as ``__cause__``) for an underlying exception whose text held a secret."""


def safe_cause(exc: BaseException, secrets: Iterable[str]) -> BaseException:
    """``exc`` itself, or a ``RedactedCause`` with its text redacted when any exception in its
    chain mentions a secret (pydantic errors, for one, quote the offending input)."""
    secrets = [s for s in secrets if s]
    seen: set[int] = set()
    node: BaseException | None = exc
    leaked = False
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        try:
            text = f"{node!s} {node!r} {node.args!r}"
        except Exception:  # noqa: BLE001 - a broken __str__ must not hide the real error
            text = ""
            leaked = True
        if any(secret in text for secret in secrets):
            leaked = True
        node = node.__cause__ or node.__context__
    if not leaked:
        return exc
    return RedactedCause(safe_text(f"{type(exc).__name__}: {exc}", secrets))


class AkuaError(Exception):
    """Base of every error raised by the Akua client."""

    def __init__(self, message: str, *, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint

    @property
    def retryable(self) -> bool:
        """Whether repeating the same (safe) call may succeed."""
        return False


class AkuaTransportError(AkuaError):
    """The request did not get an HTTP response: connection refused, DNS, dropped connection."""

    @property
    def retryable(self) -> bool:
        return True


class AkuaTimeout(AkuaTransportError):
    """The request timed out (connect, read, write or pool)."""


class AkuaResponseError(AkuaError):
    """The server answered with a body that is not valid JSON or violates the contract."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status
        self.body = body


class AkuaHTTPError(AkuaError):
    """The server answered with a 4xx/5xx status (parsed from the error envelope when present)."""

    default_status = 0

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        metadata: Mapping[str, str] | None = None,
        path: list[str] | None = None,
        request_id: str | None = None,
        endpoint: str | None = None,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status
        self.code = code
        self.metadata: dict[str, str] = dict(metadata or {})
        self.path = path
        self.request_id = request_id
        self.retry_after = retry_after
        self.body = body

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        code = f" (code {self.code})" if self.code is not None else ""
        return f"{where}HTTP {self.status}{code}: {self.message}"

    @property
    def retryable(self) -> bool:
        return self.status == 429 or self.status >= 500


class AkuaBadRequest(AkuaHTTPError):
    default_status = 400


class AkuaUnauthorized(AkuaHTTPError):
    default_status = 401


class AkuaForbidden(AkuaHTTPError):
    default_status = 403


class AkuaNotFound(AkuaHTTPError):
    default_status = 404


class AkuaConflict(AkuaHTTPError):
    """409: the etag did not match, or another operation runs on the resource."""

    default_status = 409

    @property
    def etag(self) -> str | None:
        """The resource's current etag, when the server sent it in the error metadata."""
        return self.metadata.get("etag")

    @property
    def active_operation_id(self) -> str | None:
        """The running operation that blocks this call, when the server named it."""
        return self.metadata.get("active_operation_id")


class AkuaUnprocessable(AkuaHTTPError):
    default_status = 422


class AkuaRateLimited(AkuaHTTPError):
    """429; ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one."""

    default_status = 429


class AkuaRetryAfterPending(AkuaRateLimited):
    """The call was NOT sent: the server asked these credentials (token and ``akua-context``) to
    wait (``Retry-After`` on an earlier 429 or 503) and ``retry_after`` seconds of that wait are
    left, more than the client may wait inside one call. Requeue no sooner than that."""


class AkuaServerError(AkuaHTTPError):
    """Any 5xx."""

    default_status = 500


_BY_STATUS: dict[int, type[AkuaHTTPError]] = {
    400: AkuaBadRequest,
    401: AkuaUnauthorized,
    403: AkuaForbidden,
    404: AkuaNotFound,
    409: AkuaConflict,
    422: AkuaUnprocessable,
    429: AkuaRateLimited,
}


def error_class_for_status(status: int) -> type[AkuaHTTPError]:
    """The error class for an HTTP status (unknown 4xx: the base class; 5xx: server error)."""
    if status >= 500:
        return AkuaServerError
    return _BY_STATUS.get(status, AkuaHTTPError)
