"""Builders of Akua objects and AkuaCluster facts for the unit tests of the decision core."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from akua_operator.akua.models import Cluster, Operation
from akua_operator.core import Facts, Meta, Tuning
from akua_operator.resource.models import AkuaClusterSpec, AkuaClusterStatus

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
NOW_UNIX = int(NOW.timestamp())
UID = "0b7a3c1e-2f4d-4a5b-8c6d-7e8f9a0b1c2d"
CID = "clu_abc123"
DELETE_STEPS = ["drain_workloads", "delete_workers", "delete_control_plane", "release_network"]


def cluster(**over: Any) -> Cluster:
    data: dict[str, Any] = {
        "id": CID,
        "html_url": f"https://akua.dev/clusters/{CID}",
        "name": "prod",
        "workspace_id": "ws_1",
        "state": "active",
        "provider": "managed_kaas",
        "reconciling": False,
        "created_at": 1_700_000_000,
        "updated_at": 1_700_000_100,
        "etag": "etag-1",
    }
    data.update(over)
    return Cluster.model_validate(data)


def step(name: str, status: str = "pending", **over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "status": status,
        "execution_type": "system",
        "started_at": 1_700_000_200,
        "completed_at": 1_700_000_300 if status in ("completed", "failed", "skipped") else None,
        "error_message": None,
        "retryable": False,
        "skippable": False,
    }
    data.update(over)
    return data


def operation(
    op_id: str = "op_del1",
    *,
    op_type: str = "cluster.delete",
    state: str = "RUNNING",
    steps: list[dict[str, Any]] | None = None,
    error: str | None = None,
    **over: Any,
) -> Operation:
    done = state != "RUNNING"
    metadata: dict[str, Any] = {"type": op_type, "cluster_id": CID}
    if op_type == "cluster.create":
        metadata = {"type": op_type, "workspace_id": "ws_1", "region_id": "r1", "name": "prod"}
    data: dict[str, Any] = {
        "id": op_id,
        "workspace_id": "ws_1",
        "organization_id": None,
        "owner_type": "cluster",
        "owner_id": CID,
        "parent_operation_id": None,
        "state": state,
        "done": done,
        "html_url": f"https://akua.dev/operations/{op_id}",
        "metadata": metadata,
        "response": None,
        "error": {"message": error} if error else None,
        "last_error": None,
        "started_at": NOW_UNIX,  # Akua started it when asked (see DeleteAttached)
        "completed_at": NOW_UNIX + 200 if done else None,
        "steps": steps if steps is not None else [step(n) for n in DELETE_STEPS],
    }
    data.update(over)
    return Operation.model_validate(data)


def delete_steps(done: int, running: bool = True) -> list[dict[str, Any]]:
    out = []
    for i, name in enumerate(DELETE_STEPS):
        if i < done:
            out.append(step(name, "completed"))
        elif i == done and running:
            out.append(step(name, "running"))
        else:
            out.append(step(name))
    return out


def facts(
    *,
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    deleting: bool = True,
    generation: int = 1,
    annotations: dict[str, str] | None = None,
    now: datetime = NOW,
    tuning: Tuning | None = None,
) -> Facts:
    return Facts(
        meta=Meta(
            uid=UID,
            name="prod",
            namespace="ns",
            generation=generation,
            deleting=deleting,
            annotations=annotations or {},
        ),
        spec=AkuaClusterSpec.model_validate(spec if spec is not None else {"clusterId": CID}),
        status=AkuaClusterStatus.model_validate(status or {}),
        now=now,
        tuning=tuning or Tuning(),
    )
