"""The telemetry HTTP server: real sockets, real HTTP requests, JSON bodies and status codes."""

from __future__ import annotations

import argparse
import asyncio
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from akua_operator.akua.metrics import ClientStats
from akua_operator.telemetry import (
    HealthThresholds,
    Telemetry,
    TelemetrySettings,
    add_arguments,
    settings_from_args,
    settings_from_env,
)
from akua_operator.telemetry.kopf_hooks import apply_watch_event
from controlplane import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tel(clock: Clock) -> AsyncIterator[Telemetry]:
    settings = TelemetrySettings(
        metrics_port=0,
        health_port=0,
        bind_host="127.0.0.1",
        thresholds=HealthThresholds(watch_stall_after=300.0, api_unreachable_after=120.0),
    )
    telemetry = Telemetry(settings, monotonic=clock)
    await telemetry.start()
    try:
        yield telemetry
    finally:
        await telemetry.stop()


def url(port: int | None, path: str) -> str:
    assert port
    return f"http://127.0.0.1:{port}{path}"


async def test_metrics_endpoint_serves_the_exposition(tel: Telemetry) -> None:
    tel.record_resource("ns", "c", [{"type": "Ready", "status": "True", "reason": "Active"}])
    tel.observe_operation("cluster.delete", "succeeded", 12.0)
    async with httpx.AsyncClient() as http:
        response = await http.get(url(tel.server.bound_metrics_port, "/metrics"))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        body = response.text
        assert (
            'akua_operator_resources{condition="Ready",reason="Active",status="True"} 1.0' in body
        )
        assert (
            'akua_operator_operations_total{outcome="succeeded",type="cluster.delete"} 1.0' in body
        )
        assert "process_resident_memory_bytes" in body
        # Probes live on the health port only.
        wrong = await http.get(url(tel.server.bound_metrics_port, "/healthz"))
        assert wrong.status_code == 404


async def test_probes_report_json_and_flip_with_progress(tel: Telemetry, clock: Clock) -> None:
    port = tel.server.bound_health_port
    async with httpx.AsyncClient() as http:
        ready = await http.get(url(port, "/readyz"))
        assert ready.status_code == 503
        assert ready.json()["checks"]["startup"] == {
            "ok": False,
            "started": False,
            "stopping": False,
        }
        tel.tracker.mark_started()
        ready = await http.get(url(port, "/readyz"))
        assert ready.status_code == 200
        assert ready.json()["status"] == "ok"

        tel.record_resource("ns", "c", [])
        live = await http.get(url(port, "/healthz"))
        assert live.status_code == 200
        clock.now += 301  # no watch event or reconcile for longer than the threshold
        live = await http.get(url(port, "/healthz"))
        assert live.status_code == 503
        body = live.json()
        assert body["status"] == "failing"
        assert body["checks"]["watch"]["state"] == "stalled"
        tel.tracker.mark_reconcile()
        assert (await http.get(url(port, "/healthz"))).status_code == 200


async def test_readiness_reports_but_does_not_fail_when_the_client_only_fails(
    tel: Telemetry, clock: Clock
) -> None:
    stats = ClientStats()
    tel.attach_client(stats)
    tel.tracker.mark_started()
    port = tel.server.bound_health_port
    async with httpx.AsyncClient() as http:
        stats.observe("GET /operations/{id}", "transport_error", 1.0)
        assert (await http.get(url(port, "/readyz"))).status_code == 200  # refreshed: failing
        clock.now += 121
        stats.observe("GET /operations/{id}", "503", 1.0)
        response = await http.get(url(port, "/readyz"))
        assert response.status_code == 200  # readiness is about the process, not the Akua API
        assert response.json()["checks"]["akua_api"]["state"] == "unreachable"
        metrics = (await http.get(url(tel.server.bound_metrics_port, "/metrics"))).text
        assert (
            'akua_operator_api_requests_total{endpoint="GET /operations/{id}",status="503"} 1.0'
            in metrics
        )


async def test_heartbeat_marks_the_loop() -> None:
    telemetry = Telemetry(
        TelemetrySettings(metrics_port=0, health_port=0, bind_host="127.0.0.1"),
        process_metrics=False,
    )
    telemetry.server.heartbeat_interval = 0.05
    await telemetry.start()
    try:
        # No timed bound (a shared machine may stall the loop): a heartbeat gets recorded.
        for _ in range(600):
            check = telemetry.tracker.liveness().checks["event_loop"]
            if check["seconds_since_heartbeat"] is not None:
                break
            await asyncio.sleep(0.05)
        assert check["seconds_since_heartbeat"] is not None
    finally:
        await telemetry.stop()
    assert not telemetry.tracker.readiness().ok  # stopping


async def test_one_port_serves_everything_when_ports_are_equal() -> None:
    port = free_port()
    telemetry = Telemetry(
        TelemetrySettings(metrics_port=port, health_port=port, bind_host="127.0.0.1"),
        process_metrics=False,
    )
    await telemetry.start()
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(url(port, "/metrics"))).status_code == 200
            assert (await http.get(url(port, "/healthz"))).status_code == 200
            assert (await http.get(url(port, "/readyz"))).status_code == 503
    finally:
        await telemetry.stop()


async def test_a_taken_port_fails_start_loudly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        telemetry = Telemetry(
            TelemetrySettings(metrics_port=port, health_port=0, bind_host="127.0.0.1"),
            process_metrics=False,
        )
        with pytest.raises(OSError):
            await telemetry.start()
        await telemetry.stop()


def test_settings_flags_over_env_over_defaults() -> None:
    assert settings_from_env({}) == TelemetrySettings()
    env = {"AKUA_METRICS_PORT": "9000", "AKUA_LOG_FORMAT": "JSON", "AKUA_HEALTH_PORT": "9001"}
    from_env = settings_from_env(env)
    assert (from_env.metrics_port, from_env.health_port, from_env.log_format) == (
        9000,
        9001,
        "json",
    )
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--metrics-port", "7000", "--watch-stall-seconds", "90"])
    merged = settings_from_args(args, env)
    assert merged.metrics_port == 7000  # flag wins
    assert merged.health_port == 9001  # env next
    assert merged.log_format == "json"
    assert merged.thresholds.watch_stall_after == 90
    assert merged.thresholds.api_unreachable_after == 120  # default last


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AKUA_METRICS_PORT": "http"}, "AKUA_METRICS_PORT"),
        ({"AKUA_HEALTH_PORT": "70000"}, "AKUA_HEALTH_PORT"),
        ({"AKUA_LOG_FORMAT": "xml"}, "AKUA_LOG_FORMAT"),
        ({"AKUA_WATCH_STALL_SECONDS": "-1"}, "AKUA_WATCH_STALL_SECONDS"),
    ],
)
def test_bad_environment_values_are_rejected_by_name(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_env(env)


def test_bad_flag_values_are_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--metrics-port", "99999"])
    assert "port out of range" in capsys.readouterr().err


def body(
    name: str,
    *,
    uid: str = "uid-1",
    deleting: str | None = None,
    finalizers: list[str] | None = None,
    conditions: list[dict[str, str]] | None = None,
) -> dict[str, object]:
    meta: dict[str, object] = {"namespace": "ns", "name": name, "uid": uid}
    if deleting:
        meta["deletionTimestamp"] = deleting
    if finalizers is not None:
        meta["finalizers"] = finalizers
    return {"metadata": meta, "status": {"conditions": conditions or []}}


def test_watch_events_keep_resources_and_finalizers_current(clock: Clock) -> None:
    wall = [1_795_867_230.0]  # 2026-11-28T12:00:30Z
    telemetry = Telemetry(clock=lambda: wall[0], monotonic=clock, process_metrics=False)
    ready = [{"type": "Ready", "status": "False", "reason": "Deleting"}]
    apply_watch_event(telemetry, None, body("c", finalizers=["akua.dev/finalizer"]))
    apply_watch_event(
        telemetry,
        "MODIFIED",
        body(
            "c",
            deleting="2026-11-28T12:00:00Z",
            finalizers=["akua.dev/finalizer"],
            conditions=ready,
        ),
    )
    text = telemetry.metrics.exposition().decode()
    assert 'akua_operator_resources{condition="Ready",reason="Deleting",status="False"} 1.0' in text
    assert "akua_operator_finalizers_held 1.0" in text
    assert "akua_operator_oldest_finalizer_age_seconds 30.0" in text
    assert telemetry.tracker.liveness().checks["watch"]["active_resources"] == 1
    assert telemetry.tracker.liveness().checks["watch"]["seconds_since_watch_event"] == 0
    # Another controller's finalizer does not count as ours.
    apply_watch_event(
        telemetry,
        "MODIFIED",
        body("c", deleting="2026-11-28T12:00:00Z", finalizers=["other/finalizer"]),
    )
    assert "akua_operator_finalizers_held 0.0" in telemetry.metrics.exposition().decode()
    apply_watch_event(telemetry, "DELETED", body("c"))
    text = telemetry.metrics.exposition().decode()
    assert 'akua_operator_resources{condition="Ready",reason="Deleting",status="False"} 0.0' in text
    assert telemetry.tracker.liveness().checks["watch"]["active_resources"] == 0


def test_watch_stall_threshold_covers_three_reconcile_periods_unless_set() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert settings_from_args(parser.parse_args([]), {}).thresholds.watch_stall_after == 900
    stretched = settings_from_args(parser.parse_args([]), {}, reconcile_interval=600)
    assert stretched.thresholds.watch_stall_after == 1800
    short = settings_from_args(parser.parse_args([]), {}, reconcile_interval=60)
    assert short.thresholds.watch_stall_after == 900
    explicit = settings_from_args(
        parser.parse_args(["--watch-stall-seconds", "120"]), {}, reconcile_interval=600
    )
    assert explicit.thresholds.watch_stall_after == 120
    from_env = settings_from_args(
        parser.parse_args([]), {"AKUA_WATCH_STALL_SECONDS": "200"}, reconcile_interval=600
    )
    assert from_env.thresholds.watch_stall_after == 200
