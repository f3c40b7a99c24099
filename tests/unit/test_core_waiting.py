"""status.waitingFor and operation.lastReadAt, written by decide()."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from akc_factories import CID, NOW, delete_steps, facts, operation, step

from akua_operator.core import advance, decide
from akua_operator.core.types import OperationObserved

RECORDED = {"clusterId": CID, "etag": "e1", "workspaceId": "ws_1"}


def test_a_protected_deletion_waits_for_a_person() -> None:
    d = decide(facts(spec={"clusterId": CID, "deletion": {"protection": True}}, status=RECORDED))
    assert d.status.waiting_for == "person: DeletionProtected"


def test_a_running_delete_waits_for_akua_with_its_progress() -> None:
    f = facts(status=RECORDED)
    f = advance(f, decide(f))
    d = decide(f, OperationObserved(operation(steps=delete_steps(2)), accepted=True))
    assert d.status.waiting_for == "akua: Akua operation op_del1 (delete 3/4 delete_control_plane)"
    assert d.status.operation is not None
    assert d.status.operation.last_read_at == "2026-11-28T12:00:00Z"


def test_an_approval_step_waits_for_a_person_in_akua() -> None:
    steps = [
        step("drain_workloads", "completed"),
        step("approve", "running", execution_type="approval"),
    ]
    f = advance(facts(status=RECORDED), decide(facts(status=RECORDED)))
    d = decide(f, OperationObserved(operation(steps=steps), accepted=True))
    assert d.status.waiting_for is not None
    assert d.status.waiting_for.startswith("person: step approve of Akua operation op_del1")
    assert "https://akua.dev/operations/op_del1" in d.status.waiting_for


def test_last_read_at_is_refreshed_on_change_or_every_30_seconds() -> None:
    f = advance(facts(status=RECORDED), decide(facts(status=RECORDED)))
    f = advance(f, decide(f, OperationObserved(operation(steps=delete_steps(1)), accepted=True)))
    same = OperationObserved(operation(steps=delete_steps(1)), accepted=False)
    # the same answer 10 s later: no new stamp (no status write for it)
    d = decide(replace(f, now=NOW + timedelta(seconds=10)), same)
    assert d.status_patch is None or "operation" not in d.status_patch
    # 31 s later: stamped again
    d = decide(replace(f, now=NOW + timedelta(seconds=31)), same)
    assert d.status.operation is not None
    assert d.status.operation.last_read_at == "2026-11-28T12:00:31Z"
    # a change is stamped at once
    d = decide(
        replace(f, now=NOW + timedelta(seconds=5)),
        OperationObserved(operation(steps=delete_steps(2)), accepted=False),
    )
    assert d.status.operation is not None
    assert d.status.operation.last_read_at == "2026-11-28T12:00:05Z"


def test_nothing_awaited_once_ready() -> None:
    from akc_factories import cluster

    from akua_operator.core.types import ClusterObserved

    f = facts(status=RECORDED, deleting=False)
    d = decide(f)
    d = decide(advance(f, d), ClusterObserved(cluster()))
    assert d.status.waiting_for is None
