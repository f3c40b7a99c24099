"""The telemetry wired into a real kopf process watching real AkuaClusters.

kopf runs as a subprocess against the test control plane with a handlers module that does only
what the operator's entry point does for telemetry (``setup`` + ``kopf_hooks.register``); the
test then scrapes ``/metrics`` and the probes over HTTP while it creates, marks and deletes an
AkuaCluster with kubectl.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from controlplane import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD = REPO_ROOT / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"
TOKEN = "sk_akua_kopfTelemetryProbe_123"

HANDLERS = f"""
import logging

from akua_operator import telemetry
from akua_operator.telemetry import kopf_hooks

tel = telemetry.setup()  # ports and log format from the environment
kopf_hooks.register(tel, watch=True)
logging.getLogger("akua_operator.test").warning("token is {TOKEN}")
"""

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 60.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


@pytest.fixture
def operator(
    kubectl: Any, kube_env: dict[str, str], namespace: str, tmp_path: Path
) -> Iterator[tuple[int, int, Path]]:
    kubectl("apply", "-f", CRD)
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")
    handlers = tmp_path / "handlers.py"
    handlers.write_text(textwrap.dedent(HANDLERS))
    metrics_port, health_port = free_port(), free_port()
    env = kube_env | {
        "AKUA_METRICS_PORT": str(metrics_port),
        "AKUA_HEALTH_PORT": str(health_port),
        "AKUA_LOG_FORMAT": "json",
    }
    log_path = tmp_path / "kopf.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-n", namespace, handlers],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield metrics_port, health_port, log_path
        except BaseException:
            print(log_path.read_text())
            raise
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def get(port: int, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)


def metric(port: int, line_prefix: str) -> float:
    for line in get(port, "/metrics").text.splitlines():
        if line.startswith(line_prefix + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_prefix}")


def test_kopf_process_serves_metrics_probes_and_json_logs(
    operator: tuple[int, int, Path], kubectl: Any, namespace: str
) -> None:
    metrics_port, health_port, log_path = operator

    ready = eventually(lambda: get(health_port, "/readyz"))
    eventually(lambda: _assert_status(get(health_port, "/readyz"), 200))
    assert ready.headers["content-type"].startswith("application/json")

    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {
                "name": "watched",
                "namespace": namespace,
                "finalizers": ["akua.dev/finalizer"],
            },
            "spec": {"clusterId": "clu_telemetry1"},
        }
    )
    kubectl(
        "patch",
        "akuacluster",
        "watched",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "WaitingForOperation",
                            "message": "",
                            "lastTransitionTime": "2026-11-28T12:00:00Z",
                        }
                    ]
                }
            }
        ),
    )
    sample = (
        'akua_operator_resources{condition="Ready",reason="WaitingForOperation",status="False"}'
    )
    eventually(lambda: _assert_equal(metric(metrics_port, sample), 1.0))
    live = get(health_port, "/healthz").json()
    assert live["checks"]["watch"]["active_resources"] == 1
    assert live["status"] == "ok"

    kubectl("delete", "akuacluster", "watched", "-n", namespace, "--wait=false")
    eventually(lambda: _assert_equal(metric(metrics_port, "akua_operator_finalizers_held"), 1.0))
    time.sleep(1.1)
    assert metric(metrics_port, "akua_operator_oldest_finalizer_age_seconds") >= 1.0

    kubectl(
        "patch",
        "akuacluster",
        "watched",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        '{"metadata": {"finalizers": null}}',
    )
    eventually(lambda: _assert_equal(metric(metrics_port, "akua_operator_finalizers_held"), 0.0))
    assert metric(metrics_port, "akua_operator_oldest_finalizer_age_seconds") == 0.0
    assert metric(metrics_port, sample) == 0.0
    assert get(health_port, "/healthz").json()["checks"]["watch"]["state"] == "idle"

    text = log_path.read_text()
    assert TOKEN not in text
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(e["message"] == "token is sk_akua_[REDACTED]" for e in entries)
    # kopf's per-event success line of the watch hook is dropped.
    assert not any("akua_telemetry_watch" in e["message"] for e in entries)
    # Nothing but JSON once telemetry configured logging.
    first = next(i for i, line in enumerate(text.splitlines()) if line.startswith("{"))
    rest = [line for line in text.splitlines()[first:] if line.strip()]
    assert all(line.startswith("{") for line in rest), rest


def _assert_status(response: httpx.Response, status: int) -> httpx.Response:
    assert response.status_code == status, response.text
    return response


def _assert_equal(actual: float, expected: float) -> None:
    assert actual == expected


def test_a_taken_metrics_port_stops_kopf_with_a_clear_error(tmp_path: Path) -> None:
    handlers = tmp_path / "handlers.py"
    handlers.write_text(textwrap.dedent(HANDLERS))
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "KUBECONFIG": str(tmp_path / "none"),
            "AKUA_METRICS_PORT": str(port),
            "AKUA_HEALTH_PORT": "0",
            "AKUA_LOG_FORMAT": "json",
        }
        result = subprocess.run(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-n", "x", handlers],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"cannot serve metrics/health on ports {port}/0" in output
