"""Free text from Akua reaches status and Events bounded: a huge message or an operation with
thousands of steps must never make the status PATCH too large (it would fail forever)."""

from __future__ import annotations

import json

from akc_factories import CID, cluster, facts, operation, step

from akua_operator.core import Decision, advance, decide
from akua_operator.core.types import ClusterObserved, FollowOperation, OperationObserved, Release

HUGE = "x" * (2 * 1024 * 1024)  # 2 MB
STATUS_BUDGET = 128 * 1024  # far below the API server's request limit (3 MiB)


def size(d: Decision) -> int:
    return len(json.dumps(d.status.dump()))


def accepted(obs: OperationObserved) -> Decision:
    f = facts(status={"etag": "e1", "clusterId": CID})
    d = decide(f)
    return decide(advance(f, d), obs)


def test_a_2mb_message_is_clipped_with_a_marker_everywhere() -> None:
    steps = [
        step("drain_workloads", "completed"),
        step("delete_workers", "running", error_message=HUGE, retryable=True),
        step("delete_control_plane"),
    ]
    op = operation(steps=steps, last_error={"message": HUGE, "step_name": "delete_workers" + HUGE})
    d = accepted(OperationObserved(op, accepted=True))
    assert d.action == FollowOperation("op_del1", wait=True, workspace="ws_1")
    assert size(d) < STATUS_BUDGET
    assert d.status.operation is not None
    mirrored = d.status.operation.steps[1].error_message
    assert mirrored is not None and len(mirrored) <= 1024
    assert mirrored.startswith("xxxx")
    assert mirrored.endswith("more characters cut]")
    last = d.status.operation.last_error
    assert last is not None and len(last.message) <= 1024 and "characters cut" in last.message
    assert last.step_name is not None and len(last.step_name) <= 256
    assert all(len(e.message) <= 1024 for e in d.events)
    assert all(len(c.message) <= 1024 for c in d.status.conditions)
    # The operation ends with the huge error: the DeleteFailed Event and status stay bounded.
    failed = [
        step("drain_workloads", "completed"),
        step("delete_workers", "failed", error_message=HUGE),
        step("delete_control_plane"),
    ]
    f = advance(facts(status={"etag": "e1", "clusterId": CID}), d)
    end = decide(f, OperationObserved(operation(state="FAILED", steps=failed, error=HUGE)))
    assert isinstance(end.action, Release)
    assert end.status.operation is not None and end.status.operation.error is not None
    assert len(end.status.operation.error.message) <= 1024
    assert size(end) < STATUS_BUDGET
    assert all(len(e.message) <= 1024 for e in end.events)
    assert "DeleteFailed" in [e.reason for e in end.events]


def test_10000_steps_mirror_at_most_50_around_the_current_one() -> None:
    names = [f"step_{i}" for i in range(10_000)]
    steps = [step(n, "completed" if i < 5000 else "running" if i == 5000 else "pending")
             for i, n in enumerate(names)]  # fmt: skip
    d = accepted(OperationObserved(operation(steps=steps), accepted=True))
    op = d.status.operation
    assert op is not None
    assert len(op.steps) == 50
    assert op.steps_omitted == 9_950
    assert op.steps_offset is not None
    assert "step_5000" in [s.name for s in op.steps]
    assert d.status.progress == "delete 5001/10000 step_5000"
    assert size(d) < STATUS_BUDGET
    assert len(d.events) <= 52  # at most one per mirrored step, plus DeleteStarted
    assert d.status_patch is not None and d.status_patch["operation"]["stepsOmitted"] == 9_950


def test_10000_steps_failed_late_shows_the_failed_step() -> None:
    steps = [step(f"step_{i}", "completed") for i in range(9_000)]
    steps.append(step("step_9000", "failed", error_message="disk full", retryable=False))
    steps += [step(f"step_{i}") for i in range(9_001, 10_000)]
    f = facts(status={"etag": "e1", "clusterId": CID})
    d = decide(f)
    f = advance(f, d)
    d = decide(f, OperationObserved(operation(steps=[step("a", "running")]), accepted=True))
    f = advance(f, d)
    end = decide(f, OperationObserved(operation(state="FAILED", steps=steps)))
    assert end.status.progress == "delete 9001/10000 FAILED step_9000"
    assert size(end) < STATUS_BUDGET
    failed = next(e for e in end.events if e.reason == "DeleteFailed")
    assert "step_9000" in failed.message and "disk full" in failed.message


def test_a_huge_cluster_name_is_clipped() -> None:
    f = facts(deleting=False, spec={"clusterId": CID})
    d = decide(f)
    d = decide(advance(f, d), ClusterObserved(cluster(name=HUGE, state="x" * 5000)))
    assert d.status.name is not None and len(d.status.name) <= 256
    assert d.status.state is not None and len(d.status.state) <= 256
    assert size(d) < STATUS_BUDGET
    assert all(len(e.message) <= 1024 for e in d.events)
