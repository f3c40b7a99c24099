"""Backoff and Retry-After parsing, on their own (the rate limit: tests/akua/test_budget.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from akua_operator.akua.retry import RetryPolicy, parse_retry_after


@given(
    attempt=st.integers(0, 100),
    base=st.floats(0.001, 10),
    cap=st.floats(0.01, 120),
    retry_after=st.none() | st.floats(0, 1000),
    seed=st.integers(0, 2**32),
)
def test_backoff_stays_within_full_jitter_bounds_and_respects_retry_after(
    attempt: int, base: float, cap: float, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy(base=base, cap=cap, retry_after_cap=60, rng=random.Random(seed))
    delay = policy.backoff(attempt, retry_after)
    ceiling = min(cap, base * 2**attempt)
    if retry_after:
        assert retry_after <= delay <= max(ceiling, retry_after)
    else:
        assert 0 <= delay <= ceiling
    # a Retry-After beyond the cap is never waited for inside a call (the caller requeues)
    assert policy.waits_in_call(retry_after) == (retry_after is None or retry_after <= 60)


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("3", 3.0), ("0.5", 0.5), ("-1", None), ("NaN", None),
     ("1e309", None), ("soon", None)],
)  # fmt: skip
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_parse_retry_after_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    assert seconds is not None and 100 < seconds <= 120
    past = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert parse_retry_after(past) == 0.0
