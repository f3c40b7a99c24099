"""The operator's Prometheus metrics, read back from the exposition text a scraper would see."""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import platform

import pytest
from prometheus_client.parser import text_string_to_metric_families

import akua_operator
from akua_operator.akua.metrics import ClientStats
from akua_operator.akua.models import Operation
from akua_operator.telemetry import Telemetry
from akua_operator.telemetry.metrics import (
    ApiStatsSnapshot,
    EndpointLatency,
    OperatorMetrics,
    client_stats_source,
)


def samples(metrics: OperatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition as {(name, sorted labels): value}."""
    text = metrics.exposition().decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


class Cond:
    """A condition given as an object (like a pydantic status model)."""

    def __init__(self, type: str, status: str, reason: str | None) -> None:
        self.type, self.status, self.reason = type, status, reason


def test_resources_by_condition_status_and_reason() -> None:
    m = OperatorMetrics(process_metrics=False)
    m.record_resource("ns", "a", [{"type": "Ready", "status": "True", "reason": "Active"}])
    m.record_resource("ns", "b", [{"type": "Ready", "status": "True", "reason": "Active"}])
    m.record_resource(
        "other",
        "a",
        [
            {"type": "Ready", "status": "False", "reason": "Deleting"},
            Cond("Deleting", "True", "OperationRunning"),
        ],
    )
    assert (
        value(m, "akua_operator_resources", condition="Ready", status="True", reason="Active") == 2
    )
    assert (
        value(m, "akua_operator_resources", condition="Ready", status="False", reason="Deleting")
        == 1
    )
    assert (
        value(
            m,
            "akua_operator_resources",
            condition="Deleting",
            status="True",
            reason="OperationRunning",
        )
        == 1
    )


def test_recording_a_resource_again_replaces_its_conditions_and_forget_removes_it() -> None:
    m = OperatorMetrics(process_metrics=False)
    m.record_resource("ns", "a", [{"type": "Ready", "status": "False", "reason": "Creating"}])
    m.record_resource("ns", "a", [{"type": "Ready", "status": "True", "reason": "Active"}])
    assert (
        value(m, "akua_operator_resources", condition="Ready", status="True", reason="Active") == 1
    )
    # A combination seen before stays exported at 0, so sums over it stay continuous.
    assert (
        value(m, "akua_operator_resources", condition="Ready", status="False", reason="Creating")
        == 0
    )
    m.forget_resource("ns", "a")
    m.forget_resource("ns", "a")  # idempotent
    assert (
        value(m, "akua_operator_resources", condition="Ready", status="True", reason="Active") == 0
    )
    assert m.resource_count == 0


def test_condition_without_reason_gets_an_empty_reason_label() -> None:
    m = OperatorMetrics(process_metrics=False)
    m.record_resource("ns", "a", [{"type": "Ready", "status": "Unknown"}])
    assert value(m, "akua_operator_resources", condition="Ready", status="Unknown", reason="") == 1


def test_operations_counter_and_duration_histogram() -> None:
    m = OperatorMetrics(process_metrics=False)
    m.observe_operation("cluster.delete", "succeeded", 42.0)
    m.observe_operation("cluster.delete", "succeeded", 700.0)
    m.observe_operation("cluster.create", "failed", 3.0)
    assert (
        value(m, "akua_operator_operations_total", type="cluster.delete", outcome="succeeded") == 2
    )
    assert value(m, "akua_operator_operations_total", type="cluster.create", outcome="failed") == 1
    labels = {"type": "cluster.delete", "outcome": "succeeded"}
    assert value(m, "akua_operator_operation_duration_seconds_count", **labels) == 2
    assert value(m, "akua_operator_operation_duration_seconds_sum", **labels) == 742.0
    # Buckets cover 1 s to 1 h.
    assert value(m, "akua_operator_operation_duration_seconds_bucket", le="1.0", **labels) == 0
    assert value(m, "akua_operator_operation_duration_seconds_bucket", le="60.0", **labels) == 1
    assert value(m, "akua_operator_operation_duration_seconds_bucket", le="900.0", **labels) == 2
    assert value(m, "akua_operator_operation_duration_seconds_bucket", le="3600.0", **labels) == 2


def test_oldest_finalizer_age_follows_held_and_released() -> None:
    now = [10_000.0]
    m = OperatorMetrics(clock=lambda: now[0], process_metrics=False)
    assert value(m, "akua_operator_oldest_finalizer_age_seconds") == 0
    assert value(m, "akua_operator_finalizers_held") == 0
    m.record_finalizer_held("uid-1", 9_900.0)
    m.record_finalizer_held("uid-2", datetime.datetime.fromtimestamp(9_400.0, tz=datetime.UTC))
    assert value(m, "akua_operator_oldest_finalizer_age_seconds") == 600
    assert value(m, "akua_operator_finalizers_held") == 2
    now[0] = 10_060.0
    assert value(m, "akua_operator_oldest_finalizer_age_seconds") == 660
    m.finalizer_released("uid-2")
    assert value(m, "akua_operator_oldest_finalizer_age_seconds") == 160
    m.finalizer_released("uid-1")
    m.finalizer_released("uid-1")  # idempotent
    assert value(m, "akua_operator_oldest_finalizer_age_seconds") == 0
    assert value(m, "akua_operator_finalizers_held") == 0


def test_finalizer_held_accepts_rfc3339_and_keeps_the_earliest() -> None:
    since = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.UTC)
    m = OperatorMetrics(clock=lambda: since.timestamp() + 30, process_metrics=False)
    m.record_finalizer_held("uid", "2026-11-28T12:00:00Z")
    m.record_finalizer_held("uid", "2026-11-28T12:00:20Z")  # a later re-report keeps the first
    assert value(m, "akua_operator_oldest_finalizer_age_seconds") == 30


def test_api_series_come_from_the_akua_client_stats_at_scrape_time() -> None:
    stats = ClientStats()
    m = OperatorMetrics(process_metrics=False)
    m.set_api_stats_source(client_stats_source(stats))
    stats.observe("GET /clusters/{id}", "200", 0.02)
    stats.observe("GET /clusters/{id}", "503", 0.3)
    stats.observe("DELETE /clusters/{id}", "timeout", 12.0)
    stats.count_retry("GET /clusters/{id}")
    stats.rate_limited(1.25)
    ep = "GET /clusters/{id}"
    assert value(m, "akua_operator_api_requests_total", endpoint=ep, status="200") == 1
    assert value(m, "akua_operator_api_requests_total", endpoint=ep, status="503") == 1
    assert (
        value(
            m,
            "akua_operator_api_requests_total",
            endpoint="DELETE /clusters/{id}",
            status="timeout",
        )
        == 1
    )
    assert value(m, "akua_operator_api_request_duration_seconds_count", endpoint=ep) == 2
    assert math.isclose(
        value(m, "akua_operator_api_request_duration_seconds_sum", endpoint=ep) or 0, 0.32
    )
    assert (
        value(m, "akua_operator_api_request_duration_seconds_bucket", endpoint=ep, le="0.025") == 1
    )
    assert value(m, "akua_operator_api_request_duration_seconds_bucket", endpoint=ep, le="0.5") == 2
    assert (
        value(m, "akua_operator_api_request_duration_seconds_bucket", endpoint=ep, le="+Inf") == 2
    )
    assert value(m, "akua_operator_api_retries_total", endpoint=ep) == 1
    assert value(m, "akua_operator_ratelimit_wait_seconds_total") == 1.25
    # Read at scrape time: later calls show up without any push.
    stats.observe(ep, "200", 0.01)
    assert value(m, "akua_operator_api_requests_total", endpoint=ep, status="200") == 2


def test_api_latency_without_buckets_is_a_summary() -> None:
    m = OperatorMetrics(process_metrics=False)
    m.set_api_stats_source(
        lambda: ApiStatsSnapshot(
            requests={("GET /operations/{id}", "200"): 4},
            latency={"GET /operations/{id}": EndpointLatency(count=4, sum=2.0)},
        )
    )
    text = m.exposition().decode()
    assert "# TYPE akua_operator_api_request_duration_seconds summary" in text
    assert (
        value(
            m, "akua_operator_api_request_duration_seconds_count", endpoint="GET /operations/{id}"
        )
        == 4
    )


def test_a_broken_stats_source_does_not_break_the_scrape() -> None:
    m = OperatorMetrics(process_metrics=False)

    def broken() -> ApiStatsSnapshot:
        raise RuntimeError("boom")

    m.set_api_stats_source(broken)
    m.observe_operation("cluster.delete", "succeeded", 1.0)
    assert (
        value(m, "akua_operator_operations_total", type="cluster.delete", outcome="succeeded") == 1
    )
    assert value(m, "akua_operator_ratelimit_wait_seconds_total") == 0


def test_registries_are_isolated_and_process_metrics_are_included() -> None:
    a = OperatorMetrics()
    b = OperatorMetrics(process_metrics=False)
    a.observe_operation("cluster.delete", "succeeded", 1.0)
    assert (
        value(b, "akua_operator_operations_total", type="cluster.delete", outcome="succeeded")
        is None
    )
    assert value(a, "process_resident_memory_bytes") is not None
    assert value(b, "process_resident_memory_bytes") is None


@pytest.mark.parametrize("bad", ["not a time", None])
def test_unparseable_deletion_timestamp_counts_from_now(bad: object) -> None:
    m = OperatorMetrics(clock=lambda: 500.0, process_metrics=False)
    m.record_finalizer_held("uid", bad)  # type: ignore[arg-type]
    assert value(m, "akua_operator_finalizers_held") == 1
    assert value(m, "akua_operator_oldest_finalizer_age_seconds") == 0


def _operation(op_id: str, state: str, done: bool, completed_at: int | None) -> Operation:
    return Operation.model_validate(
        {
            "id": op_id,
            "workspace_id": "ws_1",
            "organization_id": None,
            "owner_type": "cluster",
            "owner_id": "clu_1",
            "parent_operation_id": None,
            "state": state,
            "done": done,
            "html_url": "https://akua.dev/op",
            "metadata": {"type": "cluster.delete", "cluster_id": "clu_1"},
            "response": None,
            "error": None,
            "last_error": None,
            "started_at": 1_000,
            "completed_at": completed_at,
        }
    )


def test_a_done_operation_is_counted_once_with_its_duration() -> None:
    tel = Telemetry(process_metrics=False)
    assert not tel.observe_operation_done(_operation("op_1", "RUNNING", False, None))
    assert tel.observe_operation_done(_operation("op_1", "SUCCEEDED", True, 1_075))
    assert not tel.observe_operation_done(_operation("op_1", "SUCCEEDED", True, 1_075))
    assert tel.observe_operation_done(_operation("op_2", "FAILED", True, 1_010))
    m = tel.metrics
    ok = {"type": "cluster.delete", "outcome": "succeeded"}
    assert value(m, "akua_operator_operations_total", **ok) == 1
    assert value(m, "akua_operator_operation_duration_seconds_sum", **ok) == 75
    assert value(m, "akua_operator_operations_total", type="cluster.delete", outcome="failed") == 1


def per_object(m: OperatorMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples(m).items() if n == name}


def test_deletion_held_per_object_series_are_capped_oldest_first_and_removed_on_release() -> None:
    now = [10_000.0]
    m = OperatorMetrics(clock=lambda: now[0], process_metrics=False, per_object_limit=2)
    m.record_finalizer_held("u1", 9_900.0, "team-a", "newest")
    m.record_finalizer_held("u2", 9_000.0, "team-a", "oldest")
    m.record_finalizer_held("u3", 9_500.0, "team-b", "middle")
    m.record_finalizer_held("u4", 9_950.0)  # no name known: counted in the totals only
    held = per_object(m, "akua_operator_deletion_held_seconds")
    assert held == {
        (("name", "oldest"), ("namespace", "team-a")): 1000.0,
        (("name", "middle"), ("namespace", "team-b")): 500.0,
    }
    assert value(m, "akua_operator_deletion_held_overflow") == 1  # "newest" left out
    assert value(m, "akua_operator_finalizers_held") == 4

    m.finalizer_released("u2")  # the series of a released object goes away, "newest" moves in
    now[0] = 10_100.0
    held = per_object(m, "akua_operator_deletion_held_seconds")
    assert held == {
        (("name", "middle"), ("namespace", "team-b")): 600.0,
        (("name", "newest"), ("namespace", "team-a")): 200.0,
    }
    assert value(m, "akua_operator_deletion_held_overflow") == 0


def test_stalled_per_object_series_follow_the_condition_and_are_capped() -> None:
    now = [10_000.0]
    m = OperatorMetrics(clock=lambda: now[0], process_metrics=False, per_object_limit=1)
    stalled_old = {
        "type": "Stalled",
        "status": "True",
        "reason": "CredentialsRejected",
        "lastTransitionTime": "1970-01-01T02:00:00Z",
    }
    stalled_new = dict(
        stalled_old, reason="DeleteFailed", lastTransitionTime="1970-01-01T02:30:00Z"
    )
    m.record_resource("ns", "late", [stalled_new])
    m.record_resource("ns", "early", [stalled_old])
    m.record_resource("ns", "fine", [{"type": "Stalled", "status": "False", "reason": "Active"}])
    assert per_object(m, "akua_operator_resource_stalled") == {
        (("name", "early"), ("namespace", "ns"), ("reason", "CredentialsRejected")): 1.0
    }
    assert value(m, "akua_operator_resource_stalled_overflow") == 1

    m.record_resource("ns", "early", [dict(stalled_old, status="False", reason="Active")])
    assert per_object(m, "akua_operator_resource_stalled") == {
        (("name", "late"), ("namespace", "ns"), ("reason", "DeleteFailed")): 1.0
    }
    assert value(m, "akua_operator_resource_stalled_overflow") == 0
    m.forget_resource("ns", "late")
    assert per_object(m, "akua_operator_resource_stalled") == {}


def test_a_per_object_limit_of_zero_exports_only_the_overflow() -> None:
    m = OperatorMetrics(process_metrics=False, per_object_limit=0)
    m.record_finalizer_held("u1", 1.0, "ns", "a")
    assert per_object(m, "akua_operator_deletion_held_seconds") == {}
    assert value(m, "akua_operator_deletion_held_overflow") == 1


def test_build_info_and_handler_errors() -> None:
    m = OperatorMetrics(process_metrics=False)
    (labels,) = per_object(m, "akua_operator_build_info")
    info = dict(labels)
    assert info["version"] == akua_operator.__version__
    assert info["python"] == platform.python_version()
    assert info["kopf"] == importlib.metadata.version("kopf")
    assert value(m, "akua_operator_handler_errors_total", handler="delete") == 0
    m.handler_error_inc("delete")
    m.handler_error_inc("delete")
    assert value(m, "akua_operator_handler_errors_total", handler="delete") == 2
    assert value(m, "akua_operator_handler_errors_total", handler="observe") == 0


def test_ready_gauge_follows_the_readiness_verdict() -> None:
    tel = Telemetry(process_metrics=False)
    assert value(tel.metrics, "akua_operator_ready") == 0  # startup not completed
    tel.tracker.mark_started()
    assert value(tel.metrics, "akua_operator_ready") == 1
    tel.tracker.mark_stopping()
    assert value(tel.metrics, "akua_operator_ready") == 0
