"""The per-run budget of Akua calls (handlers/runtime.py): every answer is decided on.

A handler run makes at most a few calls, then asks kopf to come back. An answer received with
the last call of the budget must still reach the core: otherwise its status (e.g. "this
rename was refused, re-read the cluster") is never recorded, and the next run resends a request
the server already refused. Found by the name-drift e2e test (tests/e2e/test_lifecycle_e2e.py)
once its stale-read window no longer depended on the clock.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from test_runtime import UID, RecordingKube, make_runtime, seed

from akua_operator.core.types import Idle, Requeue
from akua_operator.handlers import runtime as runtime_module
from akua_operator.handlers.runtime import ResourceState
from akua_operator.sim.app import create_app
from akua_operator.sim.clock import FakeClock
from akua_operator.sim.config import SimConfig
from akua_operator.sim.transport import SimTransport


def living(cluster_id: str, status: dict[str, Any], name: str) -> dict[str, Any]:
    meta = {"name": "prod", "namespace": "ns", "uid": UID, "generation": 1}
    return {"metadata": meta, "spec": {"clusterId": cluster_id, "name": name}, "status": status}


async def test_an_answer_to_the_last_call_of_a_run_is_never_lost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A budget of two calls a run: a re-read and a rename, so every run ends on the budget with
    # the rename's answer (409) as its last call.
    monkeypatch.setattr(runtime_module, "MAX_ACTIONS", 2)
    # Stale reads (the simulator's clock stands still): every re-read returns the old etag,
    # every rename with it is refused (409). Runs end on the call budget, not on a decision.
    clock = FakeClock()
    sim = create_app(SimConfig(step_seconds=0.05, stale_read_seconds=5.0), clock=clock)
    cluster_id = await seed(sim)
    async with httpx.AsyncClient(transport=SimTransport(sim), base_url="http://sim") as http:
        current = (
            await http.get(
                f"/v1/clusters/{cluster_id}", headers={"authorization": "Bearer sk_akua_test"}
            )
        ).json()
        changed = await http.patch(
            f"/v1/clusters/{cluster_id}",
            json={"region_id": "reg_b"},
            headers={"authorization": "Bearer sk_akua_test", "if-match": current["etag"]},
        )
        assert changed.status_code == 200
    kube = RecordingKube(sim)
    runtime = make_runtime(kube, SimTransport(sim))
    state = ResourceState()
    for _ in range(3):
        action = await runtime.cycle(
            living(cluster_id, kube.status, "renamed"), state, deleting=False
        )
        assert isinstance(action, Requeue | Idle)
    calls = [e for e in sim.journal.read(0) if e["idempotency_key"]]
    assert calls
    assert all(e["status"] == 409 for e in calls)
    # No refused request was sent again: each rename had a key of its own, after a re-read.
    keys = [e["idempotency_key"] for e in calls]
    assert len(keys) == len(set(keys)), keys
    # What the status says is pending is never a request that was already answered.
    pending = (kube.status.get("lifecycle") or {}).get("pendingKey")
    assert pending not in keys
    # The window ends: the next run renames with the current etag.
    clock.advance(6.0)
    await runtime.cycle(living(cluster_id, kube.status, "renamed"), state, deleting=False)
    assert sim.journal.read(0)[-1]["status"] == 200
    assert kube.status["name"] == "renamed"
    await runtime.client.aclose()
