"""The single entry point of the decision core."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from akua_operator.core.deletion import decide_deletion
from akua_operator.core.lifecycle import decide_lifecycle
from akua_operator.core.lifecycle_actions import (
    RenameCluster,
    ResumeCluster,
    SuspendCluster,
)
from akua_operator.core.remote import target_workspace
from akua_operator.core.status import (
    EVENT_LIMIT,
    clip_text,
    parse_time,
    redact,
    rfc3339,
    status_patch,
)
from akua_operator.core.types import (
    Action,
    Decision,
    DeleteCluster,
    Event,
    Facts,
    FollowOperation,
    Observation,
    ObserveCluster,
    OperationObserved,
)
from akua_operator.core.waiting import waiting_for
from akua_operator.resource.models import AkuaClusterStatus

#: While an operation does not change, its ``lastReadAt`` is refreshed at most this often (so
#: following it does not write the status on every long poll).
READ_STAMP_INTERVAL = timedelta(seconds=30)

#: The calls about an existing cluster (or its operations): sent to its recorded workspace.
CLUSTER_CALLS = (
    ObserveCluster,
    FollowOperation,
    DeleteCluster,
    RenameCluster,
    SuspendCluster,
    ResumeCluster,
)


def decide(facts: Facts, obs: Observation = None) -> Decision:
    """Given the resource and the latest observation, decide the next step.

    Pure: no I/O, no clock (``facts.now``), no randomness. Call it with ``obs=None`` at the
    start of a handler cycle, then again with each action's result until the action is
    ``Release``, ``Requeue`` or ``Idle``. Feed each decision's ``status`` into the next call's
    ``facts.status`` (see :func:`advance`).
    """
    status = facts.status.model_copy(deep=True)
    events: list[Event] = []
    if facts.meta.deleting:
        action = decide_deletion(facts, status, obs, events)
    else:
        action = decide_lifecycle(facts, status, obs, events)
    action = _addressed(facts, status, action)
    if isinstance(obs, OperationObserved):
        _stamp_read(facts, status)
    status.waiting_for = waiting_for(status, action, deleting=facts.meta.deleting)
    for i, cond in enumerate(status.conditions):
        if (clean := redact(cond.message)) != cond.message:
            status.conditions[i] = cond.model_copy(update={"message": clean})
    return Decision(
        action=action,
        status=status,
        status_patch=status_patch(facts.status, status),
        events=tuple(Event(e.type, e.reason, clip_text(e.message, EVENT_LIMIT)) for e in events),
    )


def _addressed(facts: Facts, status: AkuaClusterStatus, action: Action) -> Action:
    """Every call about the resource's cluster names its workspace (core/remote.py); a create
    or import names the workspace its flow chose (where the attempt was first sent)."""
    if isinstance(action, CLUSTER_CALLS):
        workspace = target_workspace(facts, status)
        if action.workspace != workspace:
            return replace(action, workspace=workspace)
    return action


def _stamp_read(facts: Facts, status: AkuaClusterStatus) -> None:
    """``operation.lastReadAt``: when Akua last answered about the mirrored operation."""
    op, before = status.operation, facts.status.operation
    if op is None:
        return
    if before is not None and before.id == op.id and before.last_read_at is not None:
        unchanged = op.model_copy(update={"last_read_at": None}) == before.model_copy(
            update={"last_read_at": None}
        )
        stamped = parse_time(before.last_read_at)
        if unchanged and stamped is not None and facts.now - stamped < READ_STAMP_INTERVAL:
            op.last_read_at = before.last_read_at
            return
    op.last_read_at = rfc3339(facts.now)


def advance(facts: Facts, decision: Decision) -> Facts:
    """The facts after ``decision`` was applied (its status written)."""
    return replace(facts, status=decision.status)
