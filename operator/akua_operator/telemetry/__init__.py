"""Operator telemetry: Prometheus metrics, progress-based health probes and logging.

The operator wires it in with a handful of calls (see ``docs/observability.md``)::

    settings = telemetry.settings_from_args(args)  # after telemetry.add_arguments(parser)
    tel = telemetry.setup(settings)  # logging configured, nothing started yet
    kopf_hooks.register(tel)  # startup/cleanup/probe handlers (+ optional watch hook)
    tel.attach_client(akua_client)  # API metrics and API readiness from its stats

and the handlers report through ``telemetry.current()``: ``record_resource``, ``forget_resource``,
``observe_operation``, ``record_finalizer_held``, ``finalizer_released`` and the tracker's
``mark_watch_event`` / ``mark_reconcile`` / ``mark_sweep`` (each iteration of the routine
observation's list sweeps, handlers/observer.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from akua_operator.akua.metrics import ClientStats
from akua_operator.akua.models import Operation
from akua_operator.telemetry.health import (
    HealthThresholds,
    ProbeResult,
    ProgressTracker,
    is_api_failure,
)
from akua_operator.telemetry.logging import LogFormat, configure_logging
from akua_operator.telemetry.metrics import (
    DEFAULT_PER_OBJECT_LIMIT,
    Condition,
    OperatorMetrics,
    client_stats_source,
)
from akua_operator.telemetry.server import TelemetryServer

__all__ = [
    "HealthThresholds",
    "ProbeResult",
    "ProgressTracker",
    "Telemetry",
    "TelemetrySettings",
    "add_arguments",
    "current",
    "settings_from_args",
    "settings_from_env",
    "setup",
]

DEFAULT_METRICS_PORT = 8080
DEFAULT_HEALTH_PORT = 8081
_OPERATIONS_REMEMBERED = 10_000


@dataclass(frozen=True)
class TelemetrySettings:
    """Where to serve metrics and probes, how to log, and the probe thresholds."""

    metrics_port: int = DEFAULT_METRICS_PORT
    health_port: int = DEFAULT_HEALTH_PORT
    bind_host: str = "0.0.0.0"  # noqa: S104 - the pod is scraped and probed from outside
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    #: Cap of each per-object series family (deletions held, stalled resources).
    per_object_metrics_limit: int = DEFAULT_PER_OBJECT_LIMIT


def _env_whole(
    env: Mapping[str, str], key: str, default: int, *, what: str, low: int, high: int | None
) -> int:
    """``env[key]`` as an int within ``low..high`` (``default`` when unset), or a ValueError
    that names the variable and what it must be."""
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{key} must be {what}, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"{low} or more"
        raise ValueError(f"{key} must be {bounds}, got {value}")
    return value


def _env_int(env: Mapping[str, str], key: str, default: int) -> int:
    return _env_whole(env, key, default, what="an integer port", low=0, high=65535)


def _env_count(env: Mapping[str, str], key: str, default: int) -> int:
    return _env_whole(env, key, default, what="a whole number", low=0, high=None)


def _env_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{key} must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{key} must be positive, got {value}")
    return value


def _log_format(value: str, key: str = "--log-format") -> LogFormat:
    value = value.strip().lower()
    if value not in ("text", "json"):
        raise ValueError(f"{key} must be 'text' or 'json', got {value!r}")
    return cast("LogFormat", value)


def settings_from_env(env: Mapping[str, str] | None = None) -> TelemetrySettings:
    """Settings from ``AKUA_METRICS_PORT``, ``AKUA_HEALTH_PORT``, ``AKUA_LOG_FORMAT``,
    ``AKUA_LOG_LEVEL``, ``AKUA_WATCH_STALL_SECONDS``, ``AKUA_API_UNREACHABLE_SECONDS`` and
    ``AKUA_PER_OBJECT_METRICS_LIMIT``."""
    env = os.environ if env is None else env
    defaults = HealthThresholds()
    return TelemetrySettings(
        metrics_port=_env_int(env, "AKUA_METRICS_PORT", DEFAULT_METRICS_PORT),
        health_port=_env_int(env, "AKUA_HEALTH_PORT", DEFAULT_HEALTH_PORT),
        log_format=_log_format(env.get("AKUA_LOG_FORMAT", "text") or "text", "AKUA_LOG_FORMAT"),
        log_level=(env.get("AKUA_LOG_LEVEL", "") or "INFO").upper(),
        thresholds=HealthThresholds(
            watch_stall_after=_env_float(
                env, "AKUA_WATCH_STALL_SECONDS", defaults.watch_stall_after
            ),
            api_unreachable_after=_env_float(
                env, "AKUA_API_UNREACHABLE_SECONDS", defaults.api_unreachable_after
            ),
        ),
        per_object_metrics_limit=_env_count(
            env, "AKUA_PER_OBJECT_METRICS_LIMIT", DEFAULT_PER_OBJECT_LIMIT
        ),
    )


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {port}")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {seconds}")
    return seconds


def _count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {count}")
    return count


def add_arguments(parser: argparse.ArgumentParser, *, log_level: bool = True) -> None:
    """Add the telemetry flags; each defaults to its environment variable, then the default.

    ``--metrics-port`` (``AKUA_METRICS_PORT``, 8080), ``--health-port`` (``AKUA_HEALTH_PORT``,
    8081), ``--log-format`` (``AKUA_LOG_FORMAT``, text|json), ``--log-level``
    (``AKUA_LOG_LEVEL``, INFO; omit with ``log_level=False`` if the caller has its own),
    ``--watch-stall-seconds`` (``AKUA_WATCH_STALL_SECONDS``, 900) and
    ``--api-unreachable-seconds`` (``AKUA_API_UNREACHABLE_SECONDS``, 120) and
    ``--per-object-metrics-limit`` (``AKUA_PER_OBJECT_METRICS_LIMIT``, 100).
    Environment values are validated when :func:`settings_from_args` runs.
    """
    group = parser.add_argument_group("telemetry")
    group.add_argument(
        "--metrics-port",
        type=_port,
        default=None,
        help="port of /metrics (env AKUA_METRICS_PORT, default 8080)",
    )
    group.add_argument(
        "--health-port",
        type=_port,
        default=None,
        help="port of /healthz and /readyz (env AKUA_HEALTH_PORT, default 8081)",
    )
    group.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="log format (env AKUA_LOG_FORMAT, default text)",
    )
    if log_level:
        group.add_argument(
            "--log-level",
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            type=str.upper,
            default=None,
            help="log level (env AKUA_LOG_LEVEL, default INFO)",
        )
    group.add_argument(
        "--watch-stall-seconds",
        type=_seconds,
        default=None,
        help="liveness fails after this long without watch events or list sweep iterations "
        "while AkuaClusters exist (env AKUA_WATCH_STALL_SECONDS, default 900, raised to 3 x "
        "--observe-interval when that is longer)",
    )
    group.add_argument(
        "--api-unreachable-seconds",
        type=_seconds,
        default=None,
        help="after Akua API calls failed for this long without a success, /readyz reports "
        "the API as unreachable (informational: readiness does not fail; alert on the "
        "metrics instead) (env AKUA_API_UNREACHABLE_SECONDS, default 120)",
    )
    group.add_argument(
        "--per-object-metrics-limit",
        type=_count,
        default=None,
        help="at most this many per-object series for deletions held and for stalled "
        "AkuaClusters each (the oldest first; the rest counted in an _overflow gauge) "
        "(env AKUA_PER_OBJECT_METRICS_LIMIT, default 100)",
    )


def settings_from_args(
    args: argparse.Namespace,
    env: Mapping[str, str] | None = None,
    *,
    reconcile_interval: float | None = None,
) -> TelemetrySettings:
    """Flags over environment over defaults.

    ``reconcile_interval``: the period of the routine observation's list sweeps
    (``--observe-interval``), each of which marks a sweep iteration. When the watch stall
    threshold is not set explicitly, it becomes at least three such periods, so an idle operator
    whose only sign of life is its sweeps stays live.
    """
    env = os.environ if env is None else env
    base = settings_from_env(env)
    explicit_stall = getattr(args, "watch_stall_seconds", None) is not None or bool(
        env.get("AKUA_WATCH_STALL_SECONDS", "").strip()
    )
    if reconcile_interval is not None and not explicit_stall:
        floor = 3.0 * reconcile_interval
        if base.thresholds.watch_stall_after < floor:
            base = dataclasses.replace(
                base,
                thresholds=dataclasses.replace(base.thresholds, watch_stall_after=floor),
            )

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(args, name, None)
        return fallback if value is None else value

    return TelemetrySettings(
        metrics_port=pick("metrics_port", base.metrics_port),
        health_port=pick("health_port", base.health_port),
        bind_host=base.bind_host,
        log_format=pick("log_format", base.log_format),
        log_level=pick("log_level", base.log_level),
        thresholds=HealthThresholds(
            watch_stall_after=pick("watch_stall_seconds", base.thresholds.watch_stall_after),
            api_unreachable_after=pick(
                "api_unreachable_seconds", base.thresholds.api_unreachable_after
            ),
            loop_stall_after=base.thresholds.loop_stall_after,
            startup_grace=base.thresholds.startup_grace,
        ),
        per_object_metrics_limit=pick("per_object_metrics_limit", base.per_object_metrics_limit),
    )


class _HasStats(Protocol):
    @property
    def stats(self) -> ClientStats: ...


class _ApiProgress:
    """Turns the growth of the client's counters into success/failure marks on the tracker."""

    def __init__(self, stats: ClientStats, tracker: ProgressTracker) -> None:
        self._stats = stats
        self._tracker = tracker
        self._ok = 0
        self._failed = 0
        self._lock = threading.Lock()  # kopf runs the sync probe handler in a thread

    def refresh(self) -> None:
        ok = failed = 0
        for series in self._stats.snapshot().get("requests", []):
            if is_api_failure(str(series["status"])):
                failed += int(series["count"])
            else:
                ok += int(series["count"])
        with self._lock:
            if ok > self._ok:
                self._tracker.mark_api_success()
            elif failed > self._failed:
                self._tracker.mark_api_failure()
            self._ok, self._failed = max(ok, self._ok), max(failed, self._failed)


class Telemetry:
    """Metrics, progress tracker and the HTTP server of one operator process."""

    def __init__(
        self,
        settings: TelemetrySettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        process_metrics: bool = True,
    ) -> None:
        self.settings = settings or TelemetrySettings()
        self.metrics = OperatorMetrics(
            clock=clock,
            process_metrics=process_metrics,
            per_object_limit=self.settings.per_object_metrics_limit,
        )
        self.tracker = ProgressTracker(self.settings.thresholds, clock=monotonic)
        self.metrics.set_ready_source(lambda: self.tracker.readiness().ok)
        self._api_progress: _ApiProgress | None = None
        self._operations_seen: dict[str, None] = {}
        self.server = TelemetryServer(
            self.metrics,
            self.tracker,
            host=self.settings.bind_host,
            metrics_port=self.settings.metrics_port,
            health_port=self.settings.health_port,
            before_probe=self.refresh,
        )

    # -- the Akua client ----------------------------------------------------------------------

    def attach_client(self, client: _HasStats | ClientStats) -> None:
        """Export the Akua client's stats and derive API readiness from them."""
        stats = client if isinstance(client, ClientStats) else client.stats
        self.metrics.set_api_stats_source(client_stats_source(stats))
        self._api_progress = _ApiProgress(stats, self.tracker)

    def refresh(self) -> None:
        """Fold the client's counters into the tracker (run before each probe)."""
        if self._api_progress is not None:
            self._api_progress.refresh()

    # -- what the handlers report -------------------------------------------------------------

    def record_resource(
        self,
        namespace: str,
        name: str,
        conditions: Iterable[Condition],
        *,
        reconciled: bool = True,
    ) -> None:
        """Current conditions of an AkuaCluster (``akua_operator_resources``, the watch rule).

        Handlers call it after each reconcile cycle, so by default it also marks a reconcile
        tick: the routine observation skips a resource being deleted, and a deletion that
        waits (backoff, ``onFailure: Retain``) may write no status for a long time, yet its
        handler runs. ``reconciled=False`` records without the tick
        (the watch hook, whose events mark the watch instead).
        """
        self.metrics.record_resource(namespace, name, conditions)
        self.tracker.set_active_resources(self.metrics.resource_count)
        if reconciled:
            self.tracker.mark_reconcile()

    def forget_resource(self, namespace: str, name: str) -> None:
        """The AkuaCluster is gone."""
        self.metrics.forget_resource(namespace, name)
        self.tracker.set_active_resources(self.metrics.resource_count)

    def observe_operation(self, op_type: str, outcome: str, duration_seconds: float) -> None:
        """A finished Akua operation."""
        self.metrics.observe_operation(op_type, outcome, duration_seconds)

    def observe_operation_done(self, operation: Operation) -> bool:
        """Count a done Akua operation once, however often it is seen done.

        ``type`` is the operation's type, ``outcome`` its state in lower case (``succeeded``,
        ``failed``, ``cancelled``), the duration ``completed_at - started_at``. Returns whether
        it was counted (False if not done or already counted by this process).
        """
        if not operation.done or operation.id in self._operations_seen:
            return False
        self._operations_seen[operation.id] = None
        while len(self._operations_seen) > _OPERATIONS_REMEMBERED:
            del self._operations_seen[next(iter(self._operations_seen))]
        end = operation.completed_at if operation.completed_at is not None else time.time()
        self.metrics.observe_operation(
            operation.type or "unknown",
            str(operation.state).lower() or "unknown",
            max(0.0, float(end) - float(operation.started_at)),
        )
        return True

    def record_finalizer_held(
        self,
        uid: str,
        since_ts: float | datetime.datetime | str,
        namespace: str = "",
        name: str = "",
    ) -> None:
        """An AkuaCluster being deleted whose finalizer is still held."""
        self.metrics.record_finalizer_held(uid, since_ts, namespace, name)

    def handler_error(self, handler: str) -> None:
        """A handler caught an unexpected exception (``akua_operator_handler_errors_total``)."""
        self.metrics.handler_error_inc(handler)

    def finalizer_released(self, uid: str) -> None:
        """The finalizer of ``uid`` was released (or the object is gone)."""
        self.metrics.finalizer_released(uid)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start serving /metrics, /healthz and /readyz (returns at once)."""
        await self.server.start()

    async def stop(self) -> None:
        """Readiness fails from now; stop the listeners."""
        self.tracker.mark_stopping()
        await self.server.stop()


_current: Telemetry | None = None


def current() -> Telemetry:
    """The process's telemetry (set by :func:`setup`; a quiet default before that)."""
    global _current  # noqa: PLW0603 - one telemetry per process, reachable from handlers
    if _current is None:
        _current = Telemetry(process_metrics=False)
    return _current


def setup(settings: TelemetrySettings | None = None, **kwargs: Any) -> Telemetry:
    """Configure logging and create the process's :class:`Telemetry` (does not start serving)."""
    global _current  # noqa: PLW0603 - one telemetry per process, reachable from handlers
    settings = settings or settings_from_env()
    configure_logging(settings.log_format, settings.log_level)
    _current = Telemetry(settings, **kwargs)
    return _current
