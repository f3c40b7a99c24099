"""How the core reacts to a failed Akua call, the same way in every flow."""

from __future__ import annotations

from dataclasses import dataclass

from akua_operator.akua.errors import (
    AkuaError,
    AkuaForbidden,
    AkuaHTTPError,
    AkuaRateLimited,
    AkuaResponseError,
    AkuaServerError,
    AkuaTransportError,
    AkuaUnauthorized,
)
from akua_operator.core.status import (
    READY,
    RECONCILING,
    STALLED,
    backoff,
    clip,
    condition,
    mark_stalled,
    set_condition,
)
from akua_operator.core.types import Action, Event, EventType, Facts, FollowOperation, Requeue
from akua_operator.resource.models import AkuaClusterStatus, ConditionStatus

REASON_UNAUTHORIZED = "CredentialsRejected"
REASON_FORBIDDEN = "CredentialsForbidden"
REASON_MISSING = "CredentialsUnavailable"
REASON_INVALID_RESPONSE = "InvalidApiResponse"
REASON_API_UNAVAILABLE = "ApiUnavailable"
REASON_RATE_LIMITED = "RateLimited"
REASON_REJECTED = "ApiRejected"

#: Answers to ``POST /operations/{id}:wait`` meaning "no long poll here": poll with GET instead.
WAIT_UNAVAILABLE_STATUSES = frozenset({400, 405, 422, 501})


@dataclass(frozen=True)
class FailureOutcome:
    action: Requeue
    events: tuple[Event, ...]


def _stall(
    status: AkuaClusterStatus, facts: Facts, reason: str, message: str, delay: float
) -> FailureOutcome:
    previous = condition(status, STALLED)
    fresh = previous is None or previous.status != ConditionStatus.TRUE or previous.reason != reason
    mark_stalled(status, facts, reason, message)
    events = (Event(EventType.WARNING, reason, message),) if fresh else ()
    return FailureOutcome(Requeue(delay, reason), events)


def credentials_unavailable(
    status: AkuaClusterStatus, facts: Facts, message: str
) -> FailureOutcome:
    status.api_errors += 1
    text = clip(
        f"Akua credentials unavailable: {message}; retrying every "
        f"{facts.tuning.credentials_backoff:g}s"
    )
    return _stall(status, facts, REASON_MISSING, text, facts.tuning.credentials_backoff)


def api_failure(
    status: AkuaClusterStatus, facts: Facts, error: AkuaError, doing: str
) -> FailureOutcome:
    """Stall or back off for ``error`` raised while ``doing`` (e.g. "deleting the cluster").

    The finalizer is always kept: the caller turns the outcome into a TemporaryError.
    """
    status.api_errors += 1
    tuning = facts.tuning
    delay = backoff(status.api_errors, tuning.backoff_base, tuning.backoff_cap)
    if isinstance(error, AkuaUnauthorized | AkuaForbidden):
        reason = REASON_UNAUTHORIZED if isinstance(error, AkuaUnauthorized) else REASON_FORBIDDEN
        what = (
            "rejected (401 Unauthorized)"
            if reason == REASON_UNAUTHORIZED
            else ("not allowed to do this (403 Forbidden)")
        )
        source = _credential_source(facts)
        message = clip(
            f"The Akua token from {source} was {what} while {doing}; fix the credentials, "
            f"the operator retries every {tuning.credentials_backoff:g}s: {error}"
        )
        return _stall(status, facts, reason, message, tuning.credentials_backoff)
    if isinstance(error, AkuaResponseError):
        message = clip(f"Akua sent a malformed response while {doing}: {error}")
        return _stall(status, facts, REASON_INVALID_RESPONSE, message, delay)
    if isinstance(error, AkuaHTTPError):
        # never sooner than the server's Retry-After (429 or 503): the client does not wait
        # longer than its in-call cap and hands the rest of the wait to this requeue
        delay = max(delay, error.retry_after or 0.0)
    if isinstance(error, AkuaRateLimited):
        message = f"Akua rate limit while {doing}; retrying in {delay:g}s"
        return _transient(status, facts, REASON_RATE_LIMITED, message, delay)
    if isinstance(error, AkuaServerError | AkuaTransportError):
        message = clip(f"Akua API unavailable while {doing} ({error}); retrying in {delay:g}s")
        return _transient(status, facts, REASON_API_UNAVAILABLE, message, delay)
    if isinstance(error, AkuaHTTPError):
        message = clip(f"Akua rejected the request while {doing}: {error}; retrying in {delay:g}s")
        return _stall(status, facts, REASON_REJECTED, message, delay)
    message = clip(f"Akua call failed while {doing}: {error}; retrying in {delay:g}s")
    return _transient(status, facts, REASON_API_UNAVAILABLE, message, delay)


def _transient(
    status: AkuaClusterStatus, facts: Facts, reason: str, message: str, delay: float
) -> FailureOutcome:
    if condition(status, READY) is None:
        set_condition(status, facts, READY, False, reason, message)
    set_condition(status, facts, RECONCILING, True, reason, message)
    set_condition(status, facts, STALLED, False, reason, "")
    return FailureOutcome(Requeue(delay, reason), ())


def _credential_source(facts: Facts) -> str:
    creds = facts.spec.credentials
    if creds is not None and creds.secret_ref is not None:
        return f"Secret {creds.secret_ref.name} (key {creds.secret_ref.key})"
    return "the operator's own credentials (AKUA_TOKEN/AKUA_TOKEN_FILE)"


def wait_unavailable(
    status: AkuaClusterStatus, facts: Facts, error: AkuaError, action: Action
) -> Requeue | None:
    """A ``:wait`` long poll the server does not serve: poll with GET next time (the requeue
    paces it). None when ``error`` is something else."""
    if (
        isinstance(action, FollowOperation)
        and action.wait
        and isinstance(error, AkuaHTTPError)
        and error.status in WAIT_UNAVAILABLE_STATUSES
    ):
        status.api_errors += 1
        return Requeue(
            min(float(facts.tuning.wait_timeout), 5.0), "the :wait long poll is not available"
        )
    return None
