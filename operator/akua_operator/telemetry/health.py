"""Liveness and readiness that follow the operator's progress, not only its process.

The handlers and the Akua client report what happens to a :class:`ProgressTracker`; the probes
evaluate rules over those marks with an injectable clock. The exact rules (also in
``docs/observability.md``):

Liveness (``/healthz``) fails when any of these holds:

* ``startup``: startup has not completed ``startup_grace`` seconds after the tracker was created;
* ``event_loop``: the loop heartbeat (:meth:`ProgressTracker.mark_loop_tick`, ticked every second
  by the telemetry server) is older than ``loop_stall_after`` seconds;
* ``watch``: at least one AkuaCluster is known (``active_resources > 0``) and neither a watch event
  nor a sweeper iteration (nor a handler run) has been marked for ``watch_stall_after`` seconds
  (by default max(900 s, 3 x the observe interval)). The clock of this rule starts at the latest
  of: startup, the last progress mark, the moment resources became known. The routine
  observation (handlers/observer.py) marks every iteration of its list sweeps with
  :meth:`ProgressTracker.mark_sweep` (a success, a handled API failure, or nothing to sweep),
  once per observe interval at least, so a healthy but idle operator keeps marking progress; an
  Akua outage is readiness's business (a restart would not help). An operator that knows no
  AkuaCluster has nothing to make progress on and stays live.

Readiness (``/readyz``) is about this process only, and fails when any of these holds:

* ``startup``: startup has not completed (kopf runs the operator's startup handlers, then
  watches), or shutdown has begun;
* ``event_loop``: the loop heartbeat is older than ``loop_stall_after`` seconds (as liveness).

The check ``akua_api`` is informational and never fails readiness: it says ``unreachable`` once
Akua calls have failed without a single success for ``api_unreachable_after`` seconds. Taking
every replica out of its Service during an Akua outage fixes nothing (the operator is the only
client of the Akua API; nobody is routed to it), turns the Deployment unavailable and fails
``helm upgrade --wait``; the Akua API's health is exported as metrics and alerted on instead
(``akua_operator_api_requests_total`` by status, the AkuaApiErrors alert).

With kopf peering, a replica that waits for another one (paused) is a healthy standby: it stays
ready (a not-ready standby would stall a rolling update whose new pod waits), ``/readyz`` shows
it in the check ``peering`` (``paused``; present once the peering state is known, see
:meth:`ProgressTracker.set_peering_paused`), and the liveness ``watch`` rule does not apply
while paused (a paused replica handles nothing, so it marks no progress).

A "failure" here means the API could not be reached (transport error, timeout) or answered 5xx;
any other HTTP answer (404, 409, even 429) proves that the API is reachable and counts as a
success for readiness (see :func:`is_api_failure`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HealthThresholds", "ProbeResult", "ProgressTracker", "is_api_failure"]


def is_api_failure(status: int | str | None) -> bool:
    """Whether an Akua call's outcome means "not reachable" for readiness.

    ``status`` is the HTTP status code (int or its string), or ``None``/a word such as
    ``"timeout"`` or ``"transport_error"`` when no answer came.
    """
    if isinstance(status, str):
        status = int(status) if status.isdigit() else None
    return status is None or status >= 500


@dataclass(frozen=True)
class HealthThresholds:
    """Seconds after which a missing sign of progress fails a probe."""

    #: Liveness fails if no watch event / sweeper iteration for this long while resources exist.
    #: Keep it above three observe intervals (the sweeps' period).
    watch_stall_after: float = 900.0
    #: After Akua calls failed continuously for this long, ``/readyz`` reports the API
    #: ``unreachable`` (informational: readiness does not fail).
    api_unreachable_after: float = 120.0
    #: Liveness fails if the event loop heartbeat is older than this.
    loop_stall_after: float = 30.0
    #: Liveness fails if startup has not completed within this time.
    startup_grace: float = 600.0


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: ``ok`` and one entry per rule with its own verdict."""

    ok: bool
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON body served by the HTTP endpoint."""
        return {"status": "ok" if self.ok else "failing", "checks": self.checks}


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(0.0, now - then), 3)


class ProgressTracker:
    """Marks of progress and the liveness/readiness rules evaluated over them.

    The ``mark_*`` methods are cheap and thread-safe; call them from handlers, timers, the Akua
    client hooks, or anywhere progress is observed.
    """

    def __init__(
        self,
        thresholds: HealthThresholds | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.thresholds = thresholds or HealthThresholds()
        self._clock = clock
        self._lock = threading.Lock()
        self._created = clock()
        self._started: float | None = None
        self._stopping: float | None = None
        self._last_watch_event: float | None = None
        self._last_reconcile: float | None = None
        self._last_sweep: float | None = None
        self._last_api_success: float | None = None
        self._last_api_failure: float | None = None
        self._api_failing_since: float | None = None
        self._api_failures_in_row = 0
        self._last_loop_tick: float | None = None
        self._loop_lag = 0.0
        self._active_resources = 0
        self._active_since: float | None = None
        self._peering_paused: bool | None = None  # None: standalone or not known yet
        self._peering_since: float | None = None

    # -- marks ------------------------------------------------------------------------------

    def mark_started(self) -> None:
        """Startup completed: the client exists and kopf is about to watch."""
        with self._lock:
            if self._started is None:
                self._started = self._clock()

    def mark_stopping(self) -> None:
        """Shutdown began: readiness fails from now on."""
        with self._lock:
            self._stopping = self._clock()

    def mark_watch_event(self) -> None:
        """The watch delivered an event about an AkuaCluster."""
        with self._lock:
            self._last_watch_event = self._clock()

    def mark_reconcile(self) -> None:
        """A handler run decided something (successfully or with a retry)."""
        with self._lock:
            self._last_reconcile = self._clock()

    def mark_sweep(self) -> None:
        """An iteration of the routine observation ended: a list sweep (successful or with a
        handled failure) or a tick with nothing to sweep."""
        with self._lock:
            self._last_sweep = self._clock()

    def mark_api_success(self) -> None:
        """An Akua API call got an answer (any status but 5xx)."""
        with self._lock:
            self._last_api_success = self._clock()
            self._api_failing_since = None
            self._api_failures_in_row = 0

    def mark_api_failure(self) -> None:
        """An Akua API call got no answer (transport error, timeout) or a 5xx."""
        with self._lock:
            now = self._clock()
            self._last_api_failure = now
            if self._api_failing_since is None:
                self._api_failing_since = now
            self._api_failures_in_row += 1

    def mark_loop_tick(self, lag: float = 0.0) -> None:
        """The event loop ran a heartbeat, ``lag`` seconds later than scheduled."""
        with self._lock:
            self._last_loop_tick = self._clock()
            self._loop_lag = max(0.0, lag)

    def set_active_resources(self, count: int) -> None:
        """How many AkuaClusters the operator currently knows (0 means idle by design)."""
        with self._lock:
            if count > 0 and self._active_resources == 0:
                self._active_since = self._clock()
            elif count <= 0:
                self._active_since = None
            self._active_resources = max(0, count)

    def set_peering_paused(self, paused: bool) -> None:
        """kopf peering paused (another replica is active) or resumed this replica."""
        with self._lock:
            if self._peering_paused is not paused:
                self._peering_since = self._clock()
                if not paused and self._active_resources > 0:
                    self._active_since = self._peering_since  # the watch rule restarts
            self._peering_paused = paused

    # -- probes -----------------------------------------------------------------------------

    def liveness(self) -> ProbeResult:
        """Evaluate the liveness rules (see the module docstring)."""
        t = self.thresholds
        with self._lock:
            now = self._clock()
            checks: dict[str, dict[str, Any]] = {}

            started_ok = self._started is not None or now - self._created < t.startup_grace
            checks["startup"] = {
                "ok": started_ok,
                "started": self._started is not None,
                "seconds_since_created": _age(now, self._created),
                "threshold_seconds": t.startup_grace,
            }

            tick_age = _age(now, self._last_loop_tick)
            if self._last_loop_tick is None:
                # No heartbeat yet (the server starts it): the answer itself proves the loop runs.
                loop_ok = True
            else:
                loop_ok = tick_age is not None and tick_age < t.loop_stall_after
            checks["event_loop"] = {
                "ok": loop_ok,
                "seconds_since_heartbeat": tick_age,
                "lag_seconds": round(self._loop_lag, 3),
                "threshold_seconds": t.loop_stall_after,
            }

            progress = max(
                (
                    v
                    for v in (self._last_watch_event, self._last_sweep, self._last_reconcile)
                    if v is not None
                ),
                default=None,
            )
            if self._active_resources == 0 or self._started is None or self._peering_paused:
                watch_ok = True
                reason = (
                    "starting"
                    if self._started is None
                    else "paused"
                    if self._peering_paused
                    else "idle"
                )
            else:
                reference = max(
                    v for v in (progress, self._started, self._active_since) if v is not None
                )
                watch_ok = now - reference < t.watch_stall_after
                reason = "progressing" if watch_ok else "stalled"
            checks["watch"] = {
                "ok": watch_ok,
                "state": reason,
                "active_resources": self._active_resources,
                "seconds_since_watch_event": _age(now, self._last_watch_event),
                "seconds_since_sweep": _age(now, self._last_sweep),
                "seconds_since_reconcile": _age(now, self._last_reconcile),
                "threshold_seconds": t.watch_stall_after,
            }
        return ProbeResult(ok=all(c["ok"] for c in checks.values()), checks=checks)

    def readiness(self) -> ProbeResult:
        """Evaluate the readiness rules (see the module docstring)."""
        t = self.thresholds
        with self._lock:
            now = self._clock()
            checks: dict[str, dict[str, Any]] = {}
            checks["startup"] = {
                "ok": self._started is not None and self._stopping is None,
                "started": self._started is not None,
                "stopping": self._stopping is not None,
            }
            tick_age = _age(now, self._last_loop_tick)
            checks["event_loop"] = {
                # No heartbeat yet (the server starts it): the answer itself proves the loop runs.
                "ok": tick_age is None or tick_age < t.loop_stall_after,
                "seconds_since_heartbeat": tick_age,
                "threshold_seconds": t.loop_stall_after,
            }
            failing_for = _age(now, self._api_failing_since)
            if self._api_failing_since is None:
                state = "reachable" if self._last_api_success is not None else "no_calls_yet"
            elif now - self._api_failing_since < t.api_unreachable_after:
                state = "failing"
            else:
                state = "unreachable"
            checks["akua_api"] = {
                "ok": True,  # informational: the Akua API's health is a metric and an alert
                "state": state,
                "seconds_since_success": _age(now, self._last_api_success),
                "seconds_since_failure": _age(now, self._last_api_failure),
                "failing_for_seconds": failing_for,
                "failures_in_a_row": self._api_failures_in_row,
                "threshold_seconds": t.api_unreachable_after,
            }
            if self._peering_paused is not None:
                checks["peering"] = {
                    "ok": True,  # a waiting standby is ready
                    "paused": self._peering_paused,
                    "seconds_in_state": _age(now, self._peering_since),
                }
        return ProbeResult(ok=all(c["ok"] for c in checks.values()), checks=checks)

    def snapshot(self) -> dict[str, Any]:
        """Both probes, for kopf's own probe endpoint or a debug log line."""
        return {"liveness": self.liveness().as_json(), "readiness": self.readiness().as_json()}
