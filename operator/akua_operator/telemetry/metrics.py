"""Prometheus metrics of the operator, in a registry of their own.

Everything lives in one :class:`OperatorMetrics` object with its own
:class:`~prometheus_client.CollectorRegistry`, so that several instances (tests, a benchmark
running two operators in one process) never share series.

Three kinds of series:

* plain ``prometheus_client`` counters/histograms updated by the handlers
  (``akua_operations_total``, ``akua_operation_duration_seconds``);
* series computed at scrape time from state the handlers keep up to date
  (``akua_resources``, ``akua_oldest_finalizer_age_seconds``, ``akua_finalizers_held``), so that a
  resource that disappears takes its contribution with it;
* series read at scrape time from the Akua client's own statistics
  (``akua_api_requests_total``, ``akua_api_request_duration_seconds``,
  ``akua_ratelimit_wait_seconds_total``) through an :data:`ApiStatsSource` callable.

Plus the counters of the guards against mass deletion (``akua_released_by_crd_deletion_total``,
``akua_deletions_deferred_total``).

The list of metrics, labels and meaning is in ``docs/observability.md``.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from akua_operator.akua.metrics import ClientStats

__all__ = [
    "API_LATENCY_BUCKETS",
    "OPERATION_BUCKETS",
    "ApiStatsSnapshot",
    "ApiStatsSource",
    "ConditionLike",
    "EndpointLatency",
    "OperatorMetrics",
    "client_stats_source",
    "histogram_buckets",
]

#: Buckets of ``akua_operation_duration_seconds``: Akua operations last from about a second
#: (a rejected request) to an hour (a large cluster's deletion).
OPERATION_BUCKETS: Final[tuple[float, ...]] = (
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    2700.0,
    3600.0,
)

#: Default buckets of ``akua_api_request_duration_seconds`` when the client gives raw latencies.
API_LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class ConditionLike(Protocol):
    """A Kubernetes-style condition as an object (e.g. a pydantic model of the status)."""

    @property
    def type(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str | None: ...


Condition = Mapping[str, Any] | ConditionLike


@dataclass(frozen=True)
class EndpointLatency:
    """Latency of one endpoint's requests, cumulative since the client started.

    ``buckets`` are cumulative ``(upper_bound, count)`` pairs, ascending, the last one ``+Inf``
    (Prometheus histogram semantics). Without buckets the series is exposed as a summary
    (``_count`` and ``_sum`` only).
    """

    count: int
    sum: float
    buckets: tuple[tuple[float, int], ...] | None = None


@dataclass(frozen=True)
class ApiStatsSnapshot:
    """What the Akua client counted so far (monotonic counters).

    ``requests`` maps ``(endpoint, status)`` to a count; ``status`` is the HTTP status code as a
    string, or a word for requests without a response (``"timeout"``, ``"transport_error"``).
    """

    requests: Mapping[tuple[str, str], int] = field(default_factory=dict)
    latency: Mapping[str, EndpointLatency] = field(default_factory=dict)
    ratelimit_wait_seconds: float = 0.0
    retries: Mapping[str, int] = field(default_factory=dict)


#: Returns the client's statistics at scrape time, or ``None`` while there is no client.
ApiStatsSource = Callable[[], ApiStatsSnapshot | None]


def _condition_key(condition: Condition) -> tuple[str, str, str]:
    if isinstance(condition, Mapping):
        ctype = condition.get("type")
        status = condition.get("status")
        reason = condition.get("reason")
    else:
        ctype, status, reason = condition.type, condition.status, condition.reason
    return (str(ctype or ""), str(status or "Unknown"), str(reason or ""))


def _to_epoch(value: float | datetime.datetime | str) -> float:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return value.timestamp()
    if isinstance(value, str):
        return _to_epoch(datetime.datetime.fromisoformat(value.replace("Z", "+00:00")))
    return float(value)


class _StateCollector(Collector):
    """Series computed at scrape time from the metrics object's state."""

    def __init__(self, owner: OperatorMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterable[Metric]:
        return self._owner._collect_state()

    def describe(self) -> Iterable[Metric]:
        # Describing returns the families without samples so registration does not call collect.
        return [
            GaugeMetricFamily("akua_resources", "", labels=["condition", "status", "reason"]),
            GaugeMetricFamily("akua_finalizers_held", ""),
            GaugeMetricFamily("akua_oldest_finalizer_age_seconds", ""),
            CounterMetricFamily("akua_api_requests", "", labels=["endpoint", "status"]),
            SummaryMetricFamily("akua_api_request_duration_seconds", "", labels=["endpoint"]),
            CounterMetricFamily("akua_api_retries", "", labels=["endpoint"]),
            CounterMetricFamily("akua_ratelimit_wait_seconds", ""),
        ]


class OperatorMetrics:
    """The operator's metrics and the small API the handlers call to keep them current.

    All methods are cheap, never raise on odd input, and may be called from any thread.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        process_metrics: bool = True,
        api_stats: ApiStatsSource | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._resources: dict[tuple[str, str], frozenset[tuple[str, str, str]]] = {}
        self._seen_conditions: set[tuple[str, str, str]] = set()
        self._finalizers: dict[str, float] = {}
        self._api_stats: ApiStatsSource | None = api_stats
        self.operations = Counter(
            "akua_operations",
            "Akua operations the operator saw finish, by operation type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.operation_duration = Histogram(
            "akua_operation_duration_seconds",
            "Duration of finished Akua operations from start to end, by type and outcome.",
            ["type", "outcome"],
            buckets=OPERATION_BUCKETS,
            registry=self.registry,
        )
        self.released_by_crd_deletion = Counter(
            "akua_released_by_crd_deletion",
            "AkuaClusters released WITHOUT deleting their Akua cluster because the AkuaCluster "
            "CRD was being deleted (the CRD guard); their ids are in the released-clusters "
            "ConfigMap.",
            registry=self.registry,
        )
        self.deletions_deferred = Counter(
            "akua_deletions_deferred",
            "New Akua deletes the deletion budget deferred (each refusal counts; a resource "
            "that waits several times counts several times).",
            registry=self.registry,
        )
        self.observe_sweeps = Counter(
            "akua_operator_observe_sweeps",
            "Iterations of the routine observation's list sweeps, by outcome (ok, idle: nothing "
            "to sweep, failed: the list or its credentials failed; handled, paused: a standby "
            "replica).",
            ["outcome"],
            registry=self.registry,
        )
        self.observe_pages = Counter(
            "akua_operator_observe_pages",
            "Pages of GET /clusters read by the routine observation's list sweeps.",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))
        if process_metrics:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)

    # -- resources by condition -------------------------------------------------------------

    def record_resource(self, namespace: str, name: str, conditions: Iterable[Condition]) -> None:
        """Set the conditions of one AkuaCluster (replaces what was recorded for it before)."""
        keys = frozenset(_condition_key(c) for c in conditions)
        with self._lock:
            self._resources[(namespace, name)] = keys
            self._seen_conditions.update(keys)

    def forget_resource(self, namespace: str, name: str) -> None:
        """Drop an AkuaCluster that is gone (idempotent)."""
        with self._lock:
            self._resources.pop((namespace, name), None)

    @property
    def resource_count(self) -> int:
        """How many AkuaClusters are currently recorded."""
        with self._lock:
            return len(self._resources)

    # -- operations ---------------------------------------------------------------------------

    def observe_operation(self, op_type: str, outcome: str, duration_seconds: float) -> None:
        """Count one finished Akua operation (``cluster.delete``, ``succeeded``, 73.2)."""
        labels = {"type": op_type or "unknown", "outcome": outcome or "unknown"}
        self.operations.labels(**labels).inc()
        self.operation_duration.labels(**labels).observe(max(0.0, float(duration_seconds)))

    # -- guards against mass deletion ---------------------------------------------------------

    def released_by_crd_deletion_inc(self) -> None:
        """One AkuaCluster released by the CRD guard (its Akua cluster NOT deleted)."""
        self.released_by_crd_deletion.inc()

    def deletion_deferred_inc(self) -> None:
        """The deletion budget refused one new DELETE."""
        self.deletions_deferred.inc()

    # -- routine observation ------------------------------------------------------------------

    def observe_sweep_inc(self, outcome: str) -> None:
        """One list sweep iteration ended (``ok``, ``idle`` or ``failed``)."""
        self.observe_sweeps.labels(outcome=outcome).inc()

    def observe_page_inc(self) -> None:
        """One page of GET /clusters was read by a sweep."""
        self.observe_pages.inc()

    # -- finalizers ---------------------------------------------------------------------------

    def record_finalizer_held(self, uid: str, since_ts: float | datetime.datetime | str) -> None:
        """An AkuaCluster marked for deletion (since ``since_ts``, its deletionTimestamp: epoch
        seconds, a datetime, or an RFC 3339 string) still carries our finalizer.

        Calling it again for the same uid keeps the earliest timestamp.
        """
        try:
            since = _to_epoch(since_ts)
        except (TypeError, ValueError):
            since = self._clock()
        with self._lock:
            previous = self._finalizers.get(uid)
            self._finalizers[uid] = since if previous is None else min(previous, since)

    def finalizer_released(self, uid: str) -> None:
        """The finalizer of ``uid`` was removed, or the object is gone (idempotent)."""
        with self._lock:
            self._finalizers.pop(uid, None)

    # -- Akua client --------------------------------------------------------------------------

    def set_api_stats_source(self, source: ApiStatsSource | None) -> None:
        """Read the Akua client's statistics from ``source`` at every scrape."""
        with self._lock:
            self._api_stats = source

    # -- exposition ---------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def _collect_state(self) -> Iterator[Metric]:
        with self._lock:
            resources = list(self._resources.values())
            seen = sorted(self._seen_conditions)
            finalizers = list(self._finalizers.values())
            api_stats = self._api_stats
        now = self._clock()

        counts = dict.fromkeys(seen, 0)
        for keys in resources:
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily(
            "akua_resources",
            "AkuaClusters by condition type, condition status and reason "
            "(a resource counts once per condition it carries).",
            labels=["condition", "status", "reason"],
        )
        for (ctype, status, reason), value in sorted(counts.items()):
            family.add_metric([ctype, status, reason], value)
        yield family

        yield GaugeMetricFamily(
            "akua_finalizers_held",
            "AkuaClusters marked for deletion whose finalizer the operator still holds.",
            value=len(finalizers),
        )
        oldest = max(0.0, now - min(finalizers)) if finalizers else 0.0
        yield GaugeMetricFamily(
            "akua_oldest_finalizer_age_seconds",
            "Seconds since the deletionTimestamp of the oldest AkuaCluster whose finalizer is "
            "still held (0 when none).",
            value=oldest,
        )
        yield from _api_families(api_stats)


def _api_families(source: ApiStatsSource | None) -> Iterator[Metric]:
    snapshot: ApiStatsSnapshot | None = None
    if source is not None:
        try:
            snapshot = source()
        except Exception:  # noqa: BLE001 - a broken stats source must not break /metrics
            snapshot = None
    if snapshot is None:
        snapshot = ApiStatsSnapshot()

    requests = CounterMetricFamily(
        "akua_api_requests",
        "Requests the Akua client sent, by endpoint and HTTP status (or timeout/transport_error).",
        labels=["endpoint", "status"],
    )
    for (endpoint, status), count in sorted(snapshot.requests.items()):
        requests.add_metric([endpoint, status], count)
    yield requests

    latencies = sorted(snapshot.latency.items())
    help_text = "Latency of Akua API requests by endpoint (each attempt, retries included)."
    if latencies and all(lat.buckets is not None for _, lat in latencies):
        histogram = HistogramMetricFamily(
            "akua_api_request_duration_seconds", help_text, labels=["endpoint"]
        )
        for endpoint, lat in latencies:
            histogram.add_metric([endpoint], _bucket_samples(lat.buckets or ()), lat.sum)
        yield histogram
    else:
        summary = SummaryMetricFamily(
            "akua_api_request_duration_seconds", help_text, labels=["endpoint"]
        )
        for endpoint, lat in latencies:
            summary.add_metric([endpoint], lat.count, lat.sum)
        yield summary

    retries = CounterMetricFamily(
        "akua_api_retries",
        "Akua API attempts that repeated an earlier failed attempt, by endpoint.",
        labels=["endpoint"],
    )
    for endpoint, count in sorted(snapshot.retries.items()):
        retries.add_metric([endpoint], count)
    yield retries

    yield CounterMetricFamily(
        "akua_ratelimit_wait_seconds",
        "Seconds Akua requests spent waiting for a token of the client's shared rate limiter.",
        value=snapshot.ratelimit_wait_seconds,
    )


def _bucket_samples(buckets: Sequence[tuple[float, int]]) -> list[tuple[str, float]]:
    samples: list[tuple[str, float]] = []
    for bound, count in buckets:
        samples.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(count)))
    if not samples or samples[-1][0] != "+Inf":
        samples.append(("+Inf", samples[-1][1] if samples else 0.0))
    return samples


def histogram_buckets(
    observations: Iterable[float], bounds: Sequence[float] = API_LATENCY_BUCKETS
) -> tuple[tuple[float, int], ...]:
    """Cumulative buckets of raw observations (for a client that keeps raw latencies)."""
    values = list(observations)
    result = [(b, sum(1 for v in values if v <= b)) for b in bounds]
    result.append((float("inf"), len(values)))
    return tuple(result)


def client_stats_source(stats: ClientStats) -> ApiStatsSource:
    """Read an :class:`~akua_operator.akua.metrics.ClientStats` (the Akua client's ``.stats``).

    The client counts per ``(endpoint, status)`` with per-series latency buckets; the latency
    exported here is per endpoint, all statuses together.
    """

    def read() -> ApiStatsSnapshot:
        raw = stats.snapshot()
        requests: dict[tuple[str, str], int] = {}
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        buckets: dict[str, dict[float, int]] = {}
        for series in raw.get("requests", []):
            endpoint, status = str(series["endpoint"]), str(series["status"])
            count = int(series["count"])
            requests[(endpoint, status)] = requests.get((endpoint, status), 0) + count
            counts[endpoint] = counts.get(endpoint, 0) + count
            sums[endpoint] = sums.get(endpoint, 0.0) + float(series["latency_sum"])
            per_bound = buckets.setdefault(endpoint, {})
            for bound, in_bucket in series.get("buckets", []):
                per_bound[float(bound)] = per_bound.get(float(bound), 0) + int(in_bucket)
        latency: dict[str, EndpointLatency] = {}
        for endpoint, per_bound in buckets.items():
            cumulative: list[tuple[float, int]] = []
            running = 0
            for bound in sorted(per_bound):
                running += per_bound[bound]
                cumulative.append((bound, running))
            latency[endpoint] = EndpointLatency(
                count=counts[endpoint], sum=sums[endpoint], buckets=tuple(cumulative) or None
            )
        return ApiStatsSnapshot(
            requests=requests,
            latency=latency,
            ratelimit_wait_seconds=float(raw.get("rate_limit_wait_seconds", 0.0)),
            retries={str(k): int(v) for k, v in dict(raw.get("retries", {})).items()},
        )

    return read
