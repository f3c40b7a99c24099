"""Counters and latencies of Akua API calls, by endpoint template and status.

``ClientStats`` is plain data (no metrics library), so the operator's metrics endpoint can export
it however it likes; ``snapshot()`` gives a JSON-friendly copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LATENCY_BUCKETS", "ClientStats", "EndpointStats"]

# Upper bounds (seconds) of the latency histogram buckets; +Inf is implicit.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
)


@dataclass
class EndpointStats:
    """One (endpoint, status) series: count, latency sum/max and histogram bucket counts."""

    count: int = 0
    latency_sum: float = 0.0
    latency_max: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.latency_sum += seconds
        self.latency_max = max(self.latency_max, seconds)
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                return
        self.buckets[-1] += 1


class ClientStats:
    """Thread-safe counters of one ``AkuaClient``.

    * ``requests[(endpoint, status)]``: every HTTP attempt; ``endpoint`` is a template like
      ``"GET /clusters/{id}"``, ``status`` the HTTP status as a string or ``"transport_error"`` /
      ``"timeout"``.
    * ``retries[endpoint]``: attempts that were repeats of an earlier one.
    * ``rate_limit_wait_seconds`` / ``rate_limit_waits``: time spent waiting for the shared
      budget (a connection slot and a rate token, ``akua.budget.PriorityBudget``).
    * ``budget_wait_seconds[priority]``: the same time per priority class (``"completion"``,
      ``"write"``, ``"step"``, ``"observe"``).
    * ``waiting_source``: set by the client; returns the callers waiting for the budget now,
      per class (read at snapshot time).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str], EndpointStats] = {}
        self.retries: dict[str, int] = {}
        self.rate_limit_wait_seconds = 0.0
        self.rate_limit_waits = 0
        self.budget_wait_seconds: dict[str, float] = {}
        self.waiting_source: Callable[[], Mapping[str, int]] | None = None

    def observe(self, endpoint: str, status: str, seconds: float) -> None:
        with self._lock:
            series = self.requests.get((endpoint, status))
            if series is None:
                series = self.requests[(endpoint, status)] = EndpointStats()
            series.observe(seconds)

    def count_retry(self, endpoint: str) -> None:
        with self._lock:
            self.retries[endpoint] = self.retries.get(endpoint, 0) + 1

    def rate_limited(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self.rate_limit_wait_seconds += seconds
            self.rate_limit_waits += 1

    def budget_waited(self, priority: str, seconds: float) -> None:
        with self._lock:
            self.budget_wait_seconds[priority] = self.budget_wait_seconds.get(priority, 0.0) + max(
                0.0, seconds
            )

    def count(self, endpoint: str | None = None, status: str | None = None) -> int:
        """Number of attempts matching the endpoint and/or status (None matches all)."""
        with self._lock:
            return sum(
                s.count
                for (ep, st), s in self.requests.items()
                if (endpoint is None or ep == endpoint) and (status is None or st == status)
            )

    def snapshot(self) -> dict[str, Any]:
        waiting: dict[str, int] = {}
        source = self.waiting_source
        if source is not None:
            try:
                waiting = {str(k): int(v) for k, v in source().items()}
            except Exception:  # noqa: BLE001 - statistics must never break the caller
                waiting = {}
        with self._lock:
            return {
                "requests": [
                    {
                        "endpoint": ep,
                        "status": st,
                        "count": s.count,
                        "latency_sum": s.latency_sum,
                        "latency_max": s.latency_max,
                        "buckets": list(
                            zip([*LATENCY_BUCKETS, float("inf")], s.buckets, strict=True)
                        ),
                    }
                    for (ep, st), s in sorted(self.requests.items())
                ],
                "retries": dict(self.retries),
                "rate_limit_wait_seconds": self.rate_limit_wait_seconds,
                "rate_limit_waits": self.rate_limit_waits,
                "budget_wait_seconds": dict(self.budget_wait_seconds),
                "budget_waiting": waiting,
            }
