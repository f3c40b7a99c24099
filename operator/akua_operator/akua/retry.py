"""Retry policy: capped exponential backoff with full jitter, honouring ``Retry-After``."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field

__all__ = ["RetryAfterPauses", "RetryPolicy", "parse_retry_after"]


@dataclass
class RetryPolicy:
    """How often and how long to wait before repeating a safe call.

    The delay before retry ``n`` (0-based) is uniform in ``[0, min(cap, base * 2**n)]`` ("full
    jitter"); when the server sent ``Retry-After`` the delay is at least that. A ``Retry-After``
    longer than ``retry_after_cap`` is not waited for inside a call at all: the client raises and
    the caller requeues (see ``AkuaClient``).
    """

    max_retries: int = 4
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 120.0
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0 for the first retry)."""
        ceiling = min(self.cap, self.base * (2 ** min(attempt, 62)))
        delay = self.rng.uniform(0.0, max(ceiling, 0.0))
        if retry_after is not None and retry_after > 0:
            delay = max(delay, retry_after)
        return delay

    def waits_in_call(self, retry_after: float | None) -> bool:
        """Whether a ``Retry-After`` is short enough to be waited for inside one call."""
        return retry_after is None or retry_after <= self.retry_after_cap


class RetryAfterPauses:
    """When each workspace may be called again after a ``Retry-After``.

    Keyed by the token a call is made with (a digest; the token itself is not kept), whatever
    ``akua-context`` the call names: the server throttles the token's workspace, and a call
    about a recorded workspace (with ``akua-context``) and one without it (the token's own
    workspace) reach the same budget. A token that reaches several workspaces pauses them all:
    the cautious choice, since the client cannot tell which budget a 429 was about.
    Not thread-safe; the client uses it from one event loop.
    """

    def __init__(self) -> None:
        self._until: dict[tuple[str, str | None], float] = {}

    @staticmethod
    def key(token: str, context: str | None) -> tuple[str, str | None]:
        del context  # one budget per token (see the class docstring)
        return hashlib.sha256(token.encode()).hexdigest(), None

    def pause(self, key: tuple[str, str | None], until: float) -> None:
        """No call with ``key`` before ``until`` (a later pause already recorded stays)."""
        if until > self._until.get(key, float("-inf")):
            self._until[key] = until

    def remaining(self, key: tuple[str, str | None], now: float) -> float:
        """Seconds left before a call with ``key`` may be sent (0 when none)."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._until[key]
            return 0.0
        return until - now


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: delta-seconds or an HTTP date; None when absent or invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from datetime import UTC, datetime
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds
