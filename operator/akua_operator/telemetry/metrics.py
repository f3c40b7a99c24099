"""Prometheus metrics of the operator, in a registry of their own.

Everything lives in one :class:`OperatorMetrics` object with its own
:class:`~prometheus_client.CollectorRegistry`, so that several instances (tests, a benchmark
running two operators in one process) never share series.

Three kinds of series:

* plain ``prometheus_client`` counters/histograms updated by the handlers
  (``akua_operator_operations_total``, ``akua_operator_operation_duration_seconds``);
* series computed at scrape time from state the handlers keep up to date
  (``akua_operator_resources``, ``akua_operator_oldest_finalizer_age_seconds``,
  ``akua_operator_finalizers_held``), so that a resource that disappears takes its
  contribution with it;
* series read at scrape time from the Akua client's own statistics
  (``akua_operator_api_requests_total``, ``akua_operator_api_request_duration_seconds``,
  ``akua_operator_ratelimit_wait_seconds_total``,
  ``akua_operator_budget_wait_seconds_total{priority}``, ``akua_operator_budget_waiting{priority}``)
  through an :data:`ApiStatsSource` callable.

Plus the counters of the guards against mass deletion
(``akua_operator_released_by_crd_deletion_total``, ``akua_operator_deletions_deferred_total``),
``akua_operator_handler_errors_total`` and ``akua_operator_build_info``.

Per-object series (``akua_operator_deletion_held_seconds{namespace,name}``,
``akua_operator_resource_stalled{namespace,name,reason}``) exist only for the objects that need
a person's attention (a deletion in progress, a Stalled resource) and are bounded: at most
``per_object_limit`` series each, the oldest first; the objects left out are counted in
``akua_operator_deletion_held_overflow`` / ``akua_operator_resource_stalled_overflow``. They are
computed at scrape time, so the series of an object that is released or recovers disappears.

The list of metrics, labels and meaning is in ``docs/observability.md``.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
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

#: The Akua budget's priority classes as metric labels (akua.budget.Priority, lower-cased).
BUDGET_PRIORITIES: Final = ("completion", "write", "step", "observe")

__all__ = [
    "API_LATENCY_BUCKETS",
    "DEFAULT_PER_OBJECT_LIMIT",
    "OPERATION_BUCKETS",
    "ApiStatsSnapshot",
    "ApiStatsSource",
    "ConditionLike",
    "EndpointLatency",
    "OperatorMetrics",
    "client_stats_source",
    "histogram_buckets",
]

#: Buckets of ``akua_operator_operation_duration_seconds``: Akua operations last from about a second
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

#: Default cap of each per-object series family (``--per-object-metrics-limit``).
DEFAULT_PER_OBJECT_LIMIT: Final[int] = 100

#: Default buckets of ``akua_operator_api_request_duration_seconds`` (raw latencies given).
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
    #: Seconds waited for the Akua budget per priority class (``"completion"`` ... ``"observe"``).
    budget_wait_seconds: Mapping[str, float] = field(default_factory=dict)
    #: Callers waiting for the Akua budget now, per priority class.
    budget_waiting: Mapping[str, int] = field(default_factory=dict)


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


def _stalled_since(conditions: Iterable[Condition]) -> tuple[str, float | None] | None:
    """``(reason, lastTransitionTime as epoch or None)`` if ``Stalled`` is ``True``, else None."""
    for condition in conditions:
        ctype, status, reason = _condition_key(condition)
        if ctype != "Stalled" or status != "True":
            continue
        if isinstance(condition, Mapping):
            raw = condition.get("lastTransitionTime")
        else:
            raw = getattr(condition, "last_transition_time", None)
        try:
            since = None if raw is None else _to_epoch(raw)
        except (TypeError, ValueError):
            since = None
        return reason, since
    return None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


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
            GaugeMetricFamily(
                "akua_operator_resources", "", labels=["condition", "status", "reason"]
            ),
            GaugeMetricFamily("akua_operator_finalizers_held", ""),
            GaugeMetricFamily("akua_operator_oldest_finalizer_age_seconds", ""),
            GaugeMetricFamily(
                "akua_operator_deletion_held_seconds", "", labels=["namespace", "name"]
            ),
            GaugeMetricFamily("akua_operator_deletion_held_overflow", ""),
            GaugeMetricFamily(
                "akua_operator_resource_stalled", "", labels=["namespace", "name", "reason"]
            ),
            GaugeMetricFamily("akua_operator_resource_stalled_overflow", ""),
            GaugeMetricFamily("akua_operator_ready", ""),
            CounterMetricFamily("akua_operator_api_requests", "", labels=["endpoint", "status"]),
            SummaryMetricFamily(
                "akua_operator_api_request_duration_seconds", "", labels=["endpoint"]
            ),
            CounterMetricFamily("akua_operator_api_retries", "", labels=["endpoint"]),
            CounterMetricFamily("akua_operator_ratelimit_wait_seconds", ""),
            CounterMetricFamily("akua_operator_budget_wait_seconds", "", labels=["priority"]),
            GaugeMetricFamily("akua_operator_budget_waiting", "", labels=["priority"]),
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
        per_object_limit: int = DEFAULT_PER_OBJECT_LIMIT,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._clock = clock
        self._lock = threading.Lock()
        self.per_object_limit = max(0, int(per_object_limit))
        self._resources: dict[tuple[str, str], frozenset[tuple[str, str, str]]] = {}
        self._seen_conditions: set[tuple[str, str, str]] = set()
        #: (namespace, name) -> (reason, since) of the resources whose Stalled is True.
        self._stalled: dict[tuple[str, str], tuple[str, float]] = {}
        #: uid -> (deletionTimestamp as epoch, namespace, name) of held finalizers.
        self._finalizers: dict[str, tuple[float, str, str]] = {}
        self._api_stats: ApiStatsSource | None = api_stats
        self._ready: Callable[[], bool] | None = None
        self.operations = Counter(
            "akua_operator_operations",
            "Akua operations the operator saw finish, by operation type and outcome.",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.operation_duration = Histogram(
            "akua_operator_operation_duration_seconds",
            "Duration of finished Akua operations from start to end, by type and outcome.",
            ["type", "outcome"],
            buckets=OPERATION_BUCKETS,
            registry=self.registry,
        )
        self.released_by_crd_deletion = Counter(
            "akua_operator_released_by_crd_deletion",
            "AkuaClusters released WITHOUT deleting their Akua cluster because the AkuaCluster "
            "CRD was being deleted (the CRD guard); their ids are in the released-clusters "
            "ConfigMap.",
            registry=self.registry,
        )
        self.deletions_deferred = Counter(
            "akua_operator_deletions_deferred",
            "New Akua deletes the deletion budget deferred (each refusal counts; a resource "
            "that waits several times counts several times).",
            registry=self.registry,
        )
        self.handler_errors = Counter(
            "akua_operator_handler_errors",
            "Unexpected exceptions a handler caught (logged with their traceback, retried), by "
            "handler.",
            ["handler"],
            registry=self.registry,
        )
        for handler in ("observe", "delete", "sweep", "observe-follow"):
            self.handler_errors.labels(handler=handler)  # exported at 0 from the start
        self.build_info = Gauge(
            "akua_operator_build_info",
            "Always 1; the labels tell the operator's version and those of Python and kopf.",
            ["version", "python", "kopf"],
            registry=self.registry,
        )
        self.build_info.labels(
            version=_version("akua-operator"),
            python=platform.python_version(),
            kopf=_version("kopf"),
        ).set(1)

        # The operation tracker (handlers/optracker.py), every workspace together.
        self.tracker_sweeps = Counter(
            "akua_operator_tracker_sweeps",
            "GET /operations list sweeps of the operation tracker.",
            registry=self.registry,
        )
        self.tracker_sweep_pages = Counter(
            "akua_operator_tracker_sweep_pages",
            "Pages read by the operation tracker's list sweeps.",
            registry=self.registry,
        )
        self.tracker_waits = Counter(
            "akua_operator_tracker_waits",
            "POST /operations/{id}:wait long polls sent by the operation tracker.",
            registry=self.registry,
        )
        self.tracker_step_reads = Counter(
            "akua_operator_tracker_step_reads",
            "GET /operations/{id} step reads of running operations by the operation tracker.",
            registry=self.registry,
        )
        self.tracker_operations = Gauge(
            "akua_operator_tracker_operations",
            "Akua operations the operation tracker follows.",
            registry=self.registry,
        )
        self.tracker_step_transitions = Counter(
            "akua_operator_tracker_step_transitions",
            "Step status changes the operation tracker saw (and handed to the resources).",
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
        conditions = list(conditions)
        keys = frozenset(_condition_key(c) for c in conditions)
        stalled = _stalled_since(conditions)
        with self._lock:
            self._resources[(namespace, name)] = keys
            self._seen_conditions.update(keys)
            if stalled is None:
                self._stalled.pop((namespace, name), None)
            else:
                reason, since = stalled
                previous = self._stalled.get((namespace, name))
                if since is None:  # no transition time: since first seen stalled
                    since = previous[1] if previous is not None else self._clock()
                self._stalled[(namespace, name)] = (reason, since)

    def forget_resource(self, namespace: str, name: str) -> None:
        """Drop an AkuaCluster that is gone (idempotent)."""
        with self._lock:
            self._resources.pop((namespace, name), None)
            self._stalled.pop((namespace, name), None)

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

    def handler_error_inc(self, handler: str) -> None:
        """A handler caught an unexpected exception (``observe``, ``delete``, ...)."""
        self.handler_errors.labels(handler=handler or "unknown").inc()

    # -- the operation tracker ----------------------------------------------------------------

    def tracker_sweep(self, pages: int) -> None:
        """One list sweep of ``pages`` pages."""
        self.tracker_sweeps.inc()
        self.tracker_sweep_pages.inc(max(0, pages))

    def tracker_wait(self) -> None:
        self.tracker_waits.inc()

    def tracker_step_read(self) -> None:
        self.tracker_step_reads.inc()

    def tracker_followed(self, delta: int) -> None:
        """``delta`` more (or fewer) operations followed."""
        self.tracker_operations.inc(delta)

    def tracker_step_transitions_inc(self, count: int) -> None:
        if count > 0:
            self.tracker_step_transitions.inc(count)

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

    def record_finalizer_held(
        self,
        uid: str,
        since_ts: float | datetime.datetime | str,
        namespace: str = "",
        name: str = "",
    ) -> None:
        """An AkuaCluster marked for deletion (since ``since_ts``, its deletionTimestamp: epoch
        seconds, a datetime, or an RFC 3339 string) still carries our finalizer.

        Calling it again for the same uid keeps the earliest timestamp (and the latest known
        namespace/name). Without a name the object counts in the totals but has no per-object
        series.
        """
        try:
            since = _to_epoch(since_ts)
        except (TypeError, ValueError):
            since = self._clock()
        with self._lock:
            previous = self._finalizers.get(uid)
            if previous is not None:
                since = min(previous[0], since)
                namespace, name = namespace or previous[1], name or previous[2]
            self._finalizers[uid] = (since, namespace, name)

    def finalizer_released(self, uid: str) -> None:
        """The finalizer of ``uid`` was removed, or the object is gone (idempotent)."""
        with self._lock:
            self._finalizers.pop(uid, None)

    # -- Akua client --------------------------------------------------------------------------

    def set_api_stats_source(self, source: ApiStatsSource | None) -> None:
        """Read the Akua client's statistics from ``source`` at every scrape."""
        with self._lock:
            self._api_stats = source

    def set_ready_source(self, source: Callable[[], bool] | None) -> None:
        """Export ``akua_operator_ready`` (1/0) from ``source`` (the readiness verdict)."""
        with self._lock:
            self._ready = source

    # -- exposition ---------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The text exposition format (what ``/metrics`` serves)."""
        return generate_latest(self.registry)

    def _collect_state(self) -> Iterator[Metric]:
        with self._lock:
            resources = list(self._resources.values())
            seen = sorted(self._seen_conditions)
            held = list(self._finalizers.values())
            stalled = [
                (ns, nm, reason, since) for (ns, nm), (reason, since) in self._stalled.items()
            ]
            api_stats = self._api_stats
            ready_source = self._ready
            limit = self.per_object_limit
        finalizers = [since for since, _, _ in held]
        now = self._clock()

        counts = dict.fromkeys(seen, 0)
        for keys in resources:
            for key in keys:
                counts[key] = counts.get(key, 0) + 1
        family = GaugeMetricFamily(
            "akua_operator_resources",
            "AkuaClusters by condition type, condition status and reason "
            "(a resource counts once per condition it carries).",
            labels=["condition", "status", "reason"],
        )
        for (ctype, status, reason), value in sorted(counts.items()):
            family.add_metric([ctype, status, reason], value)
        yield family

        yield GaugeMetricFamily(
            "akua_operator_finalizers_held",
            "AkuaClusters marked for deletion whose finalizer the operator still holds.",
            value=len(finalizers),
        )
        oldest = max(0.0, now - min(finalizers)) if finalizers else 0.0
        yield GaugeMetricFamily(
            "akua_operator_oldest_finalizer_age_seconds",
            "Seconds since the deletionTimestamp of the oldest AkuaCluster whose finalizer is "
            "still held (0 when none).",
            value=oldest,
        )
        yield from _per_object_families(now, held, stalled, limit)
        if ready_source is not None:
            try:
                ready = 1 if ready_source() else 0
            except Exception:  # noqa: BLE001 - a broken source must not break /metrics
                ready = 0
            yield GaugeMetricFamily(
                "akua_operator_ready",
                "1 while /readyz passes (startup done, not stopping, event loop alive), else 0.",
                value=ready,
            )
        yield from _api_families(api_stats)


def _per_object_families(
    now: float,
    held: Sequence[tuple[float, str, str]],
    stalled: Sequence[tuple[str, str, str, float]],
    limit: int,
) -> Iterator[Metric]:
    """The bounded per-object series: the ``limit`` oldest objects of each kind, the rest
    counted in an overflow gauge (ties broken by namespace/name, so the set is stable)."""
    named = sorted((since, ns, nm) for since, ns, nm in held if nm)
    family = GaugeMetricFamily(
        "akua_operator_deletion_held_seconds",
        "Seconds since the deletionTimestamp of an AkuaCluster whose finalizer is still held "
        "(the oldest --per-object-metrics-limit ones; the rest in "
        "akua_operator_deletion_held_overflow).",
        labels=["namespace", "name"],
    )
    for since, ns, nm in named[:limit]:
        family.add_metric([ns, nm], max(0.0, now - since))
    yield family
    yield GaugeMetricFamily(
        "akua_operator_deletion_held_overflow",
        "AkuaClusters with a held finalizer left out of akua_operator_deletion_held_seconds by "
        "the per-object limit.",
        value=max(0, len(named) - limit),
    )

    ordered = sorted(stalled, key=lambda s: (s[3], s[0], s[1]))
    family = GaugeMetricFamily(
        "akua_operator_resource_stalled",
        "1 for an AkuaCluster whose Stalled condition is True, with its reason (the oldest "
        "--per-object-metrics-limit ones; the rest in akua_operator_resource_stalled_overflow).",
        labels=["namespace", "name", "reason"],
    )
    for ns, nm, reason, _since in ordered[:limit]:
        family.add_metric([ns, nm, reason], 1)
    yield family
    yield GaugeMetricFamily(
        "akua_operator_resource_stalled_overflow",
        "Stalled AkuaClusters left out of akua_operator_resource_stalled by the per-object limit.",
        value=max(0, len(ordered) - limit),
    )


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
        "akua_operator_api_requests",
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
            "akua_operator_api_request_duration_seconds", help_text, labels=["endpoint"]
        )
        for endpoint, lat in latencies:
            histogram.add_metric([endpoint], _bucket_samples(lat.buckets or ()), lat.sum)
        yield histogram
    else:
        summary = SummaryMetricFamily(
            "akua_operator_api_request_duration_seconds", help_text, labels=["endpoint"]
        )
        for endpoint, lat in latencies:
            summary.add_metric([endpoint], lat.count, lat.sum)
        yield summary

    retries = CounterMetricFamily(
        "akua_operator_api_retries",
        "Akua API attempts that repeated an earlier failed attempt, by endpoint.",
        labels=["endpoint"],
    )
    for endpoint, count in sorted(snapshot.retries.items()):
        retries.add_metric([endpoint], count)
    yield retries

    yield CounterMetricFamily(
        "akua_operator_ratelimit_wait_seconds",
        "Seconds Akua requests spent waiting for a token of the client's shared rate limiter.",
        value=snapshot.ratelimit_wait_seconds,
    )

    budget_wait = CounterMetricFamily(
        "akua_operator_budget_wait_seconds",
        "Seconds Akua requests waited for the client's budget (a connection slot and a rate "
        "token), by the priority class they asked for.",
        labels=["priority"],
    )
    waits = {name: 0.0 for name in BUDGET_PRIORITIES} | dict(snapshot.budget_wait_seconds)
    for name, seconds in sorted(waits.items()):
        budget_wait.add_metric([name], seconds)
    yield budget_wait

    waiting = GaugeMetricFamily(
        "akua_operator_budget_waiting",
        "Akua requests waiting for the client's budget now, by priority class.",
        labels=["priority"],
    )
    counts = dict.fromkeys(BUDGET_PRIORITIES, 0) | dict(snapshot.budget_waiting)
    for name, count in sorted(counts.items()):
        waiting.add_metric([name], count)
    yield waiting


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
            budget_wait_seconds={
                str(k): float(v) for k, v in dict(raw.get("budget_wait_seconds", {})).items()
            },
            budget_waiting={str(k): int(v) for k, v in dict(raw.get("budget_waiting", {})).items()},
        )

    return read
