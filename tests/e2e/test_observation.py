"""Routine observation end to end (handlers/observer.py): the real control plane, the simulator
and the operator as a process. Drift in Akua is noticed by the paged ``GET /clusters`` sweep;
adopted clusters cost list pages, not one ``GET /clusters/{id}`` each; and an idle operator's
liveness probe stays OK across several observe intervals (its only sign of life are the sweeps).
"""

from __future__ import annotations

import re
import socket
from typing import Any

import httpx
from e2e_helpers import Operator, Sim, akc, condition, get_akc, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ready(obj: dict[str, Any] | None) -> bool:
    return bool(obj) and condition(obj, "Ready").get("status") == "True"


def list_gets(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in journal if e["method"] == "GET" and e["path"] == "/clusters"]


def cluster_gets(journal: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e for e in journal if e["method"] == "GET" and re.fullmatch(r"/clusters/[^/:]+", e["path"])
    ]


def sweeps(metrics_port: int) -> float:
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("akua_operator_observe_sweeps_total{")
    )


def test_drift_is_noticed_by_the_list_sweep_and_costs_pages_not_gets(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.env["AKUA_OBSERVE_INTERVAL"] = "2"
    operator.start()
    names = [f"fleet-{i:02d}" for i in range(20)]
    ids = {n: sim.seed(f"{n}-{namespace}")["id"] for n in names}
    for name, cid in ids.items():
        kubectl.apply(akc(name, namespace, clusterId=cid))
    for name in names:
        wait_for(f"{name} adopted", lambda name=name: ready(get_akc(kubectl, name, namespace)))
    # Adopting took its clusters from list sweeps: no GET per cluster.
    assert cluster_gets(sim.journal()) == []

    # Steady state: several intervals pass; each sweep is one page (20 < 100 a page).
    seq = len(sim.journal())
    wait_for("five more sweeps", lambda: len(list_gets(sim.journal()[seq:])) >= 5, timeout=60)
    assert cluster_gets(sim.journal()[seq:]) == []

    # A cluster renamed in Akua (outside Kubernetes): its new name, etag and state reach the
    # status through the sweep, still without a GET of the cluster.
    cid = ids["fleet-07"]
    etag = next(c for c in sim.state()["clusters"] if c["id"] == cid)["etag"]
    renamed = sim.api(
        "PATCH", f"/clusters/{cid}", json={"name": "renamed-in-ui"}, headers={"if-match": etag}
    )
    assert renamed.status_code == 200, renamed.text
    seq = len(sim.journal())
    obj = wait_for(
        "the rename seen in status",
        lambda: (
            (o := get_akc(kubectl, "fleet-07", namespace))
            and (o.get("status") or {}).get("name") == "renamed-in-ui"
            and o
        ),
        timeout=60,
    )
    assert obj["status"]["etag"] == renamed.json()["etag"]
    assert cluster_gets(sim.journal()[seq:]) == []
    operator.assert_alive()


def test_a_cluster_missing_from_the_list_is_read_once_by_id(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.env["AKUA_OBSERVE_INTERVAL"] = "1"
    operator.start()
    cid = sim.seed(f"vanishing-{namespace}")["id"]
    kubectl.apply(akc("vanishing", namespace, clusterId=cid))
    wait_for("adopted", lambda: ready(get_akc(kubectl, "vanishing", namespace)))
    gone = sim.api(
        "DELETE",
        f"/clusters/{cid}",
        headers={"if-match": next(c for c in sim.state()["clusters"] if c["id"] == cid)["etag"]},
    )
    assert gone.status_code == 202, gone.text
    obj = wait_for(
        "ClusterNotFound",
        lambda: (
            (o := get_akc(kubectl, "vanishing", namespace))
            and condition(o, "Stalled").get("reason") == "ClusterNotFound"
            and o
        ),
        timeout=90,
    )
    assert f"Akua cluster {cid} does not exist" in condition(obj, "Stalled")["message"]
    # Noticed as absent from the list, then proven gone by a GET of the cluster itself.
    assert any(e["path"] == f"/clusters/{cid}" and e["status"] == 404 for e in sim.journal())


def test_an_idle_operator_stays_live_across_several_observe_intervals(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    health_port, metrics_port = free_port(), free_port()
    operator.env.update(
        {
            "AKUA_OBSERVE_INTERVAL": "1",
            # Liveness fails after 3 s without a watch event or a sweep: an idle operator has
            # no watch events, so only its sweeps keep it live.
            "AKUA_WATCH_STALL_SECONDS": "3",
            "AKUA_HEALTH_PORT": str(health_port),
            "AKUA_METRICS_PORT": str(metrics_port),
        }
    )
    operator.start()
    cid = sim.seed(f"idle-{namespace}")["id"]
    kubectl.apply(akc("idle", namespace, clusterId=cid))
    wait_for("adopted", lambda: ready(get_akc(kubectl, "idle", namespace)))
    healthz = f"http://127.0.0.1:{health_port}/healthz"
    wait_for("the health endpoint", lambda: httpx.get(healthz, timeout=5).status_code == 200)
    start = sweeps(metrics_port)
    answers: list[dict[str, Any]] = []

    def ten_more_sweeps() -> bool:
        response = httpx.get(healthz, timeout=5)
        answers.append(response.json())
        assert response.status_code == 200, response.text
        return sweeps(metrics_port) >= start + 10

    wait_for("ten more sweeps, /healthz OK throughout", ten_more_sweeps, timeout=120)
    watch = answers[-1]["checks"]["watch"]
    assert watch["active_resources"] == 1
    assert watch["threshold_seconds"] == 3
    assert watch["seconds_since_sweep"] is not None and watch["seconds_since_sweep"] < 3
    operator.assert_alive()
