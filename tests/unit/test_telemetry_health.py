"""Liveness and readiness rules over progress marks, with an injected clock."""

from __future__ import annotations

import pytest

from akua_operator.akua.metrics import ClientStats
from akua_operator.telemetry import Telemetry, TelemetrySettings
from akua_operator.telemetry.health import HealthThresholds, ProgressTracker, is_api_failure


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


THRESHOLDS = HealthThresholds(
    watch_stall_after=300.0, api_unreachable_after=120.0, loop_stall_after=30.0, startup_grace=60.0
)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tracker(clock: Clock) -> ProgressTracker:
    return ProgressTracker(THRESHOLDS, clock=clock)


def test_not_ready_before_startup_and_ready_after(tracker: ProgressTracker) -> None:
    assert not tracker.readiness().ok
    assert tracker.liveness().ok  # a starting process is alive
    tracker.mark_started()
    result = tracker.readiness()
    assert result.ok
    assert result.checks["akua_api"]["state"] == "no_calls_yet"


def test_liveness_fails_when_startup_never_completes(
    tracker: ProgressTracker, clock: Clock
) -> None:
    clock.advance(59)
    assert tracker.liveness().ok
    clock.advance(2)
    result = tracker.liveness()
    assert not result.ok
    assert not result.checks["startup"]["ok"]


def test_idle_operator_without_resources_stays_live(tracker: ProgressTracker, clock: Clock) -> None:
    tracker.mark_started()
    clock.advance(10_000)
    tracker.mark_loop_tick()
    result = tracker.liveness()
    assert result.ok
    assert result.checks["watch"]["state"] == "idle"


def test_watch_stall_with_resources_fails_liveness_after_threshold(
    tracker: ProgressTracker, clock: Clock
) -> None:
    tracker.mark_started()
    tracker.set_active_resources(3)
    tracker.mark_watch_event()
    clock.advance(299)
    tracker.mark_loop_tick()
    assert tracker.liveness().ok
    clock.advance(2)
    tracker.mark_loop_tick()
    result = tracker.liveness()
    assert not result.ok
    assert result.checks["watch"]["state"] == "stalled"
    assert result.checks["watch"]["seconds_since_watch_event"] == 301
    # Readiness is about the Akua API, not the watch.
    assert tracker.readiness().ok


def test_reconcile_ticks_keep_an_idle_watch_live(tracker: ProgressTracker, clock: Clock) -> None:
    tracker.mark_started()
    tracker.set_active_resources(1)
    for _ in range(10):  # 10 timer periods of 60 s with no watch event at all
        clock.advance(60)
        tracker.mark_reconcile()
        tracker.mark_loop_tick()
        assert tracker.liveness().ok
    clock.advance(301)
    tracker.mark_loop_tick()
    assert not tracker.liveness().ok
    tracker.mark_reconcile()
    assert tracker.liveness().ok


def test_watch_rule_counts_from_when_resources_appear(
    tracker: ProgressTracker, clock: Clock
) -> None:
    tracker.mark_started()
    clock.advance(1000)  # idle for a long time
    tracker.set_active_resources(1)  # a first resource appears now
    tracker.mark_loop_tick()
    assert tracker.liveness().ok
    clock.advance(301)
    tracker.mark_loop_tick()
    assert not tracker.liveness().ok
    tracker.set_active_resources(0)  # it went away: idle again
    assert tracker.liveness().ok


def test_event_loop_heartbeat_stall_fails_liveness(tracker: ProgressTracker, clock: Clock) -> None:
    tracker.mark_started()
    tracker.mark_loop_tick(lag=0.5)
    assert tracker.liveness().checks["event_loop"]["lag_seconds"] == 0.5
    clock.advance(31)
    result = tracker.liveness()
    assert not result.ok
    assert not result.checks["event_loop"]["ok"]


def test_api_failures_are_reported_by_readiness_but_never_fail_it(
    tracker: ProgressTracker, clock: Clock
) -> None:
    tracker.mark_started()
    tracker.mark_api_success()
    clock.advance(5)
    tracker.mark_api_failure()
    clock.advance(60)
    tracker.mark_api_failure()
    result = tracker.readiness()
    assert result.ok
    assert result.checks["akua_api"]["state"] == "failing"
    clock.advance(61)  # 121 s since the first failure after the last success
    tracker.mark_api_failure()
    result = tracker.readiness()
    # Readiness is about the process: an Akua outage shows in /readyz and in the metrics, but
    # taking the operator out of its Service would fix nothing and fail `helm upgrade --wait`.
    assert result.ok
    assert result.checks["akua_api"] == {
        "ok": True,
        "state": "unreachable",
        "seconds_since_success": 126.0,
        "seconds_since_failure": 0.0,
        "failing_for_seconds": 121.0,
        "failures_in_a_row": 3,
        "threshold_seconds": 120.0,
    }
    assert tracker.liveness().ok  # an unreachable API is not a reason to restart the pod
    tracker.mark_api_success()
    assert tracker.readiness().checks["akua_api"]["state"] == "reachable"


def test_readiness_fails_when_the_event_loop_stalls(tracker: ProgressTracker, clock: Clock) -> None:
    tracker.mark_started()
    tracker.mark_loop_tick()
    clock.advance(29)
    assert tracker.readiness().ok
    clock.advance(2)
    result = tracker.readiness()
    assert not result.ok
    assert not result.checks["event_loop"]["ok"]
    tracker.mark_loop_tick()
    assert tracker.readiness().ok


def test_not_ready_once_stopping(tracker: ProgressTracker) -> None:
    tracker.mark_started()
    tracker.mark_stopping()
    result = tracker.readiness()
    assert not result.ok
    assert result.checks["startup"]["stopping"] is True


def test_probe_json_body_shape(tracker: ProgressTracker) -> None:
    body = tracker.readiness().as_json()
    assert body["status"] == "failing"
    assert set(body["checks"]) == {"startup", "event_loop", "akua_api"}
    assert set(tracker.liveness().as_json()["checks"]) == {"startup", "event_loop", "watch"}


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        ("200", False),
        (404, False),
        ("409", False),
        ("429", False),
        ("500", True),
        (503, True),
        ("timeout", True),
        ("transport_error", True),
        (None, True),
    ],
)
def test_what_counts_as_an_unreachable_api(status: int | str | None, failure: bool) -> None:
    assert is_api_failure(status) is failure


def test_readiness_follows_the_akua_client_stats(clock: Clock) -> None:
    tel = Telemetry(
        TelemetrySettings(thresholds=THRESHOLDS), monotonic=clock, process_metrics=False
    )
    stats = ClientStats()
    tel.attach_client(stats)
    tel.tracker.mark_started()
    stats.observe("GET /clusters/{id}", "200", 0.01)
    tel.refresh()
    assert tel.tracker.readiness().checks["akua_api"]["state"] == "reachable"
    stats.observe("GET /clusters/{id}", "503", 0.01)
    tel.refresh()
    clock.advance(100)
    stats.observe("GET /clusters/{id}", "transport_error", 0.01)
    tel.refresh()
    assert tel.tracker.readiness().checks["akua_api"]["state"] == "failing"
    clock.advance(30)
    tel.refresh()
    assert tel.tracker.readiness().checks["akua_api"]["state"] == "unreachable"
    assert tel.tracker.readiness().ok  # informational only
    stats.observe("GET /clusters/{id}", "404", 0.01)  # an answer: reachable again
    tel.refresh()
    assert tel.tracker.readiness().checks["akua_api"]["state"] == "reachable"


def test_telemetry_resource_records_drive_the_watch_rule(clock: Clock) -> None:
    tel = Telemetry(
        TelemetrySettings(thresholds=THRESHOLDS), monotonic=clock, process_metrics=False
    )
    tel.tracker.mark_started()
    tel.record_resource("ns", "a", [])
    clock.advance(301)
    assert not tel.tracker.liveness().ok
    tel.forget_resource("ns", "a")
    assert tel.tracker.liveness().ok


def test_a_long_waiting_deletion_whose_handler_runs_stays_live(clock: Clock) -> None:
    """Deleting resources have no timer and may write no status for hours (onFailure: Retain
    re-checks every 15 s without an API call); the handler's record_resource keeps it live."""
    tel = Telemetry(
        TelemetrySettings(thresholds=THRESHOLDS), monotonic=clock, process_metrics=False
    )
    tel.tracker.mark_started()
    stalled = [{"type": "Stalled", "status": "True", "reason": "DeleteFailed"}]
    for _ in range(200):  # 50 minutes of re-checks
        clock.advance(15)
        tel.record_resource("ns", "retained", stalled)
        tel.tracker.mark_loop_tick()
        assert tel.tracker.liveness().ok
    # If the handler stops running, the stall is detected.
    clock.advance(301)
    tel.tracker.mark_loop_tick()
    assert not tel.tracker.liveness().ok


def test_watch_events_alone_do_not_count_as_reconcile_ticks(clock: Clock) -> None:
    from akua_operator.telemetry.kopf_hooks import apply_watch_event

    tel = Telemetry(
        TelemetrySettings(thresholds=THRESHOLDS), monotonic=clock, process_metrics=False
    )
    apply_watch_event(tel, None, {"metadata": {"namespace": "ns", "name": "a", "uid": "u"}})
    watch = tel.tracker.liveness().checks["watch"]
    assert watch["seconds_since_watch_event"] == 0
    assert watch["seconds_since_reconcile"] is None
