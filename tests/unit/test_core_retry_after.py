"""The core requeues no sooner than the server's Retry-After, whatever error carried it."""

from __future__ import annotations

import pytest
from akc_factories import facts

from akua_operator.akua.errors import (
    AkuaHTTPError,
    AkuaRateLimited,
    AkuaRetryAfterPending,
    AkuaServerError,
)
from akua_operator.core import advance, decide
from akua_operator.core.types import ApiFailed, Requeue


@pytest.mark.parametrize(
    "error",
    [
        AkuaRateLimited("slow down", status=429, retry_after=120),
        AkuaServerError("unavailable", status=503, retry_after=120),
        AkuaRetryAfterPending("not sent", status=429, retry_after=120),
    ],
)
def test_a_delete_failed_with_retry_after_is_not_resent_before_it_passes(
    error: AkuaHTTPError,
) -> None:
    f = facts(status={"etag": "e1"})
    d = decide(f)
    f = advance(f, d)
    d2 = decide(f, ApiFailed(error, d.action))  # type: ignore[arg-type]
    assert isinstance(d2.action, Requeue)
    assert d2.status.deletion is not None
    # NOW in akc_factories is 2026-11-28T12:00:00Z: 120 s later
    assert d2.status.deletion.next_attempt_at == "2026-11-28T12:02:00Z"
