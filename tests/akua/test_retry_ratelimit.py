"""Backoff, Retry-After parsing and the token bucket, on their own."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from akua_operator.akua.ratelimit import TokenBucket
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


class VirtualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def test_token_bucket_spaces_requests_beyond_the_burst() -> None:
    t = VirtualTime()
    bucket = TokenBucket(rate=4, burst=2, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(6):
        await bucket.acquire()
        starts.append(t.now)
    # a burst of 2 at once, then one every 1/rate seconds
    assert starts == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.75, 1.0])
    assert bucket.total_wait_seconds == pytest.approx(1.0)
    assert bucket.waits == 4


async def test_disabled_bucket_never_waits() -> None:
    t = VirtualTime()
    bucket = TokenBucket(rate=0, burst=1, clock=t.clock, sleep=t.sleep)
    assert [await bucket.acquire() for _ in range(100)] == [0.0] * 100
    assert t.now == 0
