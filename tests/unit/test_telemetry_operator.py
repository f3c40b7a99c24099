"""The real ``akua-operator run`` serves our metrics and probes during a real deletion.

The operator runs as users run it (a subprocess with KUBECONFIG, AKUA_API_URL, AKUA_TOKEN and
the telemetry ports), against the test control plane and the Akua simulator; the test adopts a
seeded Akua cluster, deletes the AkuaCluster and reads ``/metrics``, ``/healthz`` and ``/readyz``
over HTTP along the way.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from akua_operator.sim.config import SimConfig
from akua_operator.sim.server import SimServer
from controlplane import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD = REPO_ROOT / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"
TOKEN = "sk_akua_test"

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 90.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def sim() -> Iterator[SimServer]:
    with SimServer(SimConfig(step_seconds=0.5, tokens=[TOKEN])) as server:
        yield server


@pytest.fixture
def extra_env() -> dict[str, str]:
    return {}


@pytest.fixture
def running_operator(
    kubectl: Any,
    kube_env: dict[str, str],
    namespace: str,
    sim: SimServer,
    tmp_path: Path,
    extra_env: dict[str, str],
) -> Iterator[tuple[int, int, Path]]:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")
    metrics_port, health_port = free_port(), free_port()
    env = kube_env | {
        "AKUA_API_URL": sim.url,
        "AKUA_TOKEN": TOKEN,
        "AKUA_METRICS_PORT": str(metrics_port),
        "AKUA_HEALTH_PORT": str(health_port),
        "AKUA_LOG_FORMAT": "json",
        "AKUA_WAIT_TIMEOUT": "1",
        "AKUA_OBSERVE_INTERVAL": "400",  # the liveness watch threshold becomes 3 x 400 s
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    env.pop("AKUA_TOKEN_FILE", None)
    binary = Path(sys.executable).parent / "akua-operator"
    assert binary.exists(), f"{binary} is missing: run `make venv`"
    log_path = tmp_path / "operator.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(binary), "run", "--namespace", namespace],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield metrics_port, health_port, log_path
    except BaseException:
        print(log_path.read_text(errors="replace")[-8000:])
        raise
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_operator_metrics_and_probes_through_a_deletion(
    running_operator: tuple[int, int, Path], kubectl: Any, namespace: str, sim: SimServer
) -> None:
    metrics_port, health_port, log_path = running_operator
    health = f"http://127.0.0.1:{health_port}"

    def ready() -> None:
        response = httpx.get(f"{health}/readyz", timeout=5)
        assert response.status_code == 200, response.text

    eventually(ready)

    admin = sim.admin_url
    cluster = httpx.post(f"{admin}/clusters", json={"name": "observed"}, timeout=10).json()
    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {"name": "observed", "namespace": namespace},
            "spec": {"clusterId": cluster["id"]},
        }
    )

    def adopted_and_ready() -> Samples:
        samples = scrape(metrics_port)
        assert value(
            samples, "akua_operator_resources", condition="Ready", status="True", reason="Active"
        )
        return samples

    samples = eventually(adopted_and_ready)
    # Adopted from the list sweep (one page), not a GET of the cluster.
    listed = value(
        samples, "akua_operator_api_requests_total", endpoint="GET /clusters", status="200"
    )
    assert listed is not None and listed >= 1
    assert value(
        samples, "akua_operator_api_request_duration_seconds_count", endpoint="GET /clusters"
    )
    pages = value(samples, "akua_operator_observe_pages_total")
    assert pages is not None and pages >= 1
    live = httpx.get(f"{health}/healthz", timeout=5).json()
    assert live["status"] == "ok"
    assert live["checks"]["watch"]["active_resources"] == 1
    assert live["checks"]["watch"]["threshold_seconds"] == 1200
    readiness = httpx.get(f"{health}/readyz", timeout=5).json()
    assert readiness["checks"]["akua_api"]["state"] == "reachable"

    kubectl("delete", "akuacluster", "observed", "-n", namespace, "--wait=false")

    def gone() -> Samples:
        samples = scrape(metrics_port)
        assert value(samples, "akua_operator_finalizers_held") == 0
        deletes = value(
            samples, "akua_operator_operations_total", type="cluster.delete", outcome="succeeded"
        )
        assert deletes == 1
        return samples

    samples = eventually(gone)
    assert value(samples, "akua_operator_oldest_finalizer_age_seconds") == 0
    duration = value(
        samples,
        "akua_operator_operation_duration_seconds_count",
        type="cluster.delete",
        outcome="succeeded",
    )
    assert duration == 1
    assert value(
        samples, "akua_operator_api_requests_total", endpoint="DELETE /clusters/{id}", status="202"
    )
    assert kubectl("get", "akuacluster", "-n", namespace, "-o", "name").stdout.strip() == ""

    text = log_path.read_text(errors="replace")
    assert TOKEN not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines
    for line in lines:
        entry = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(entry)
    assert any(
        json.loads(line).get("name") == "observed"
        and json.loads(line).get("namespace") == namespace
        for line in lines
    ), "no log line carries the AkuaCluster's namespace/name"
    assert not re.search(r"Bearer\s+sk_", text)


@pytest.mark.parametrize(
    "extra_env", [{"AKUA_API_UNREACHABLE_SECONDS": "3", "AKUA_BACKOFF_CAP": "2"}]
)
def test_an_akua_outage_shows_in_metrics_and_readyz_but_keeps_the_operator_ready(
    running_operator: tuple[int, int, Path], kubectl: Any, namespace: str, sim: SimServer
) -> None:
    metrics_port, health_port, _log = running_operator
    health = f"http://127.0.0.1:{health_port}"

    def probe(path: str, status: int) -> dict[str, Any]:
        response = httpx.get(f"{health}{path}", timeout=5)
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        return body

    """Readiness is about the process: during an Akua outage the operator stays ready (so the
    Deployment stays available and `helm upgrade --wait` passes); /readyz names the outage in
    its informational check, and the metrics name the held deletion for the alerts."""
    eventually(lambda: probe("/readyz", 200))
    cluster = httpx.post(f"{sim.admin_url}/clusters", json={"name": "outage"}, timeout=10).json()
    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {"name": "outage", "namespace": namespace},
            "spec": {"clusterId": cluster["id"]},
        }
    )

    def active() -> None:
        samples = scrape(metrics_port)
        assert value(
            samples, "akua_operator_resources", condition="Ready", status="True", reason="Active"
        )

    eventually(active)  # adopted: the finalizer is on, the deletion will need the API

    sim.stop()  # the Akua API goes away; the deletion keeps trying
    kubectl("delete", "akuacluster", "outage", "-n", namespace, "--wait=false")

    def reported_unreachable() -> dict[str, Any]:
        body = probe("/readyz", 200)
        assert body["checks"]["akua_api"]["state"] == "unreachable", body
        return body

    body = eventually(reported_unreachable)
    assert body["status"] == "ok"
    assert probe("/healthz", 200)["checks"]["watch"]["state"] == "progressing"
    failed = sum(
        v
        for (name, labels), v in scrape(metrics_port).items()
        if name == "akua_operator_api_requests_total" and ("status", "transport_error") in labels
    )
    assert failed >= 1
    samples = scrape(metrics_port)
    assert value(samples, "akua_operator_finalizers_held") == 1
    key = (
        "akua_operator_deletion_held_seconds",
        (("name", "outage"), ("namespace", namespace)),
    )
    held = samples.get(key)  # the alert's series: names the object
    assert held is not None
    assert held >= 0

    sim.start()  # back on the same port

    def deleted() -> None:
        samples = scrape(metrics_port)
        assert value(samples, "akua_operator_finalizers_held") == 0
        assert not [k for k in samples if k[0] == "akua_operator_deletion_held_seconds"]
        assert value(
            samples, "akua_operator_operations_total", type="cluster.delete", outcome="succeeded"
        )

    eventually(deleted)
    assert probe("/readyz", 200)["checks"]["akua_api"]["state"] == "reachable"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AKUA_METRICS_PORT": "http"}, "AKUA_METRICS_PORT must be an integer port"),
        ({"AKUA_LOG_FORMAT": "xml"}, "AKUA_LOG_FORMAT must be 'text' or 'json'"),
    ],
)
def test_a_bad_telemetry_environment_value_stops_run_with_its_name(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    binary = Path(sys.executable).parent / "akua-operator"
    result = subprocess.run(
        [str(binary), "run", "--namespace", "x"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
