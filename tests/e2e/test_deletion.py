"""Deletion end to end: the real control plane, the simulator on loopback, the operator as a
process. Issue 4, behaviours 1-9."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import pytest
from conftest import (
    Operator,
    Sim,
    akc,
    condition,
    event_reasons,
    events,
    get_akc,
    wait_for,
)

from akua_operator.sim.config import SimConfig

DELETE_STEPS = ["drain_workloads", "delete_workers", "delete_control_plane", "release_network"]


def adopt(kubectl: Any, sim: Sim, namespace: str, name: str = "prod", **spec: Any) -> str:
    """Seed a cluster in the simulator and adopt it with an AkuaCluster; wait until observed."""
    cluster_id: str = sim.seed(f"{name}-{namespace}")["id"]
    kubectl.apply(akc(name, namespace, clusterId=cluster_id, **spec))
    return cluster_id


def observed(kubectl: Any, name: str, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(
        "the first observation",
        lambda: (
            (o := get_akc(kubectl, name, namespace))
            and (o.get("status") or {}).get("etag")
            and condition(o, "Ready").get("status") == "True"
            and o
        ),
    )
    return obj


def finalizers(kubectl: Any, name: str, namespace: str) -> list[str]:
    obj = get_akc(kubectl, name, namespace)
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


class Watch:
    """`kubectl get akc NAME -w -o json`: every version of the object the API server sends."""

    def __init__(self, kubectl: Any, name: str, namespace: str) -> None:
        self.proc = subprocess.Popen(
            [str(kubectl.binary), "get", "akc", name, "-n", namespace, "-w", "-o", "json"],
            env=kubectl.control_plane.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.objects: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        decoder = json.JSONDecoder()
        buf = ""
        for line in self.proc.stdout:
            buf += line
            while buf.strip():
                try:
                    obj, end = decoder.raw_decode(buf.lstrip())
                except json.JSONDecodeError:
                    break
                self.objects.append(obj)
                buf = buf.lstrip()[end:]

    def stop(self) -> list[dict[str, Any]]:
        time.sleep(0.5)
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        return self.objects


@pytest.fixture
def sim_config() -> SimConfig:
    return SimConfig(step_seconds=0.5)


def test_observe_on_create_records_etag_state_and_conditions(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator
) -> None:
    operator.start()
    cluster_id = adopt(kubectl, sim, namespace)
    obj = observed(kubectl, "prod", namespace)
    status = obj["status"]
    assert status["clusterId"] == cluster_id
    assert status["state"] == "active"
    assert status["reconciling"] is False
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    for type_ in ("Ready", "Reconciling", "Stalled"):
        assert condition(obj, type_)["observedGeneration"] == obj["metadata"]["generation"]
    assert condition(obj, "Stalled")["status"] == "False"
    assert obj["metadata"]["finalizers"] == ["akua.dev/finalizer"]
    # the printer columns show it
    table = kubectl("get", "akc", "-n", namespace).stdout
    assert "CLUSTER ID" in table
    assert cluster_id in table
    assert "active" in table


class TestDeleteFlow:
    @pytest.fixture
    def sim_config(self) -> SimConfig:
        # Steps long enough that a 1 s :wait sees every one of them.
        return SimConfig(step_seconds=2.5)

    def test_kubectl_delete_blocks_until_the_operation_ended_and_status_shows_every_step(
        self, kubectl: Any, sim: Sim, namespace: str, operator: Operator
    ) -> None:
        operator.start()
        cluster_id = adopt(kubectl, sim, namespace)
        etag = observed(kubectl, "prod", namespace)["status"]["etag"]
        watch = Watch(kubectl, "prod", namespace)
        started = time.monotonic()
        kubectl("delete", "akc", "prod", "-n", namespace, "--timeout=120s", timeout=150)
        elapsed = time.monotonic() - started
        seen = watch.stop()
        operator.assert_alive()

        # kubectl returned only once the object was gone, i.e. after the operation ended
        assert get_akc(kubectl, "prod", namespace) is None
        ops = sim.delete_operations(cluster_id)
        assert len(ops) == 1
        assert ops[0]["state"] == "SUCCEEDED"
        assert elapsed >= 4 * 2.5 - 1
        assert not sim.cluster_exists(cluster_id)

        # exactly one DELETE, with the stored etag and a uid-derived idempotency key
        (delete,) = sim.deletes(cluster_id)
        assert delete["if_match"] == etag
        assert delete["idempotency_key"].startswith(seen[0]["metadata"]["uid"])

        # the watch saw every step running, in order, in status.operation and the progress column
        progress = [(o.get("status") or {}).get("progress") for o in seen]
        wanted = [f"delete {i}/4 {n}" for i, n in enumerate(DELETE_STEPS, start=1)]
        got = [p for p in dict.fromkeys(progress) if p in wanted]
        assert got == wanted, progress
        last = next(o for o in reversed(seen) if (o.get("status") or {}).get("operation"))
        op = last["status"]["operation"]
        assert op["id"] == ops[0]["id"]
        assert op["type"] == "cluster.delete"
        assert op["htmlUrl"].startswith("https://")
        assert [s["name"] for s in op["steps"]] == DELETE_STEPS
        for s in op["steps"]:
            assert set(s) >= {
                "name",
                "status",
                "executionType",
                "startedAt",
                "retryable",
                "skippable",
            }
        # the operation id was in status before the operation ended
        running = [
            o
            for o in seen
            if ((o.get("status") or {}).get("operation") or {}).get("state") == "RUNNING"
        ]
        assert running and running[0]["status"]["operation"]["id"] == ops[0]["id"]
        # Reconciling carried the progress
        assert any(
            "delete 2/4 delete_workers" in condition(o, "Reconciling").get("message", "")
            for o in seen
        )

        reasons = event_reasons(kubectl, "prod", namespace)
        assert "DeleteStarted" in reasons
        assert "Deleted" in reasons
        assert reasons.count("OperationStep") >= 8
        deleted = next(e for e in events(kubectl, "prod", namespace) if e["reason"] == "Deleted")
        assert ops[0]["html_url"] in deleted["message"]
