"""Pure helpers to build the status: timestamps, conditions, operation mirror, progress, patches."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from akua_operator.akua.models import Cluster, Operation
from akua_operator.core.types import Event, EventType, Facts
from akua_operator.resource.models import (
    AkuaClusterStatus,
    Condition,
    ConditionStatus,
    OperationErrorStatus,
    OperationLastErrorStatus,
    OperationStatus,
    OperationStepStatus,
)

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"

DONE_STEP_STATES = frozenset({"completed", "skipped"})


# --- time -----------------------------------------------------------------------------------


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_unix(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return rfc3339(datetime.fromtimestamp(seconds, tz=UTC))


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def backoff(n: int, base: float, cap: float) -> float:
    """Exponential backoff for the n-th consecutive failure (n >= 1)."""
    n = max(1, n)
    return float(min(cap, base * (2 ** min(n - 1, 20))))


# --- conditions -----------------------------------------------------------------------------


def set_condition(  # noqa: PLR0917 - called with (value, reason, message) tuples
    status: AkuaClusterStatus,
    facts: Facts,
    type_: str,
    value: bool,
    reason: str,
    message: str = "",
) -> None:
    """Set one condition in place; lastTransitionTime moves only when the status flips."""
    wanted = ConditionStatus.TRUE if value else ConditionStatus.FALSE
    for i, cond in enumerate(status.conditions):
        if cond.type == type_:
            transition = cond.last_transition_time
            if cond.status != wanted:
                transition = rfc3339(facts.now)
            status.conditions[i] = Condition(
                type=type_,
                status=wanted,
                reason=reason,
                message=message,
                last_transition_time=transition,
                observed_generation=facts.meta.generation,
            )
            return
    status.conditions.append(
        Condition(
            type=type_,
            status=wanted,
            reason=reason,
            message=message,
            last_transition_time=rfc3339(facts.now),
            observed_generation=facts.meta.generation,
        )
    )
    order = {READY: 0, RECONCILING: 1, STALLED: 2}
    status.conditions.sort(key=lambda c: order.get(c.type, 9))


def condition(status: AkuaClusterStatus, type_: str) -> Condition | None:
    for cond in status.conditions:
        if cond.type == type_:
            return cond
    return None


def set_kstatus(
    status: AkuaClusterStatus,
    facts: Facts,
    *,
    ready: tuple[bool, str, str],
    reconciling: tuple[bool, str, str],
    stalled: tuple[bool, str, str],
) -> None:
    """Set Ready, Reconciling and Stalled at once: (value, reason, message) each."""
    set_condition(status, facts, READY, *ready)
    set_condition(status, facts, RECONCILING, *reconciling)
    set_condition(status, facts, STALLED, *stalled)


def mark_stalled(status: AkuaClusterStatus, facts: Facts, reason: str, message: str) -> None:
    """Stalled=True (Reconciling=False, Ready=False): needs a person or a long wait."""
    set_kstatus(
        status,
        facts,
        ready=(False, reason, message),
        reconciling=(False, reason, message),
        stalled=(True, reason, message),
    )


# --- cluster and operation mirror ----------------------------------------------------------


def record_cluster(status: AkuaClusterStatus, cluster: Cluster) -> None:
    status.cluster_id = cluster.id
    status.html_url = cluster.html_url
    status.name = cluster.name
    status.workspace_id = cluster.workspace_id
    status.provider = str(cluster.provider)
    status.state = str(cluster.state)
    status.reconciling = cluster.reconciling
    status.etag = cluster.etag


def mirror_operation(op: Operation) -> OperationStatus:
    return OperationStatus(
        id=op.id,
        type=op.type,
        state=str(op.state),
        done=op.done,
        html_url=op.html_url,
        started_at=from_unix(op.started_at),
        completed_at=from_unix(op.completed_at),
        error=OperationErrorStatus(message=op.error.message) if op.error else None,
        last_error=(
            OperationLastErrorStatus(
                message=op.last_error.message, step_name=op.last_error.step_name
            )
            if op.last_error
            else None
        ),
        steps=[
            OperationStepStatus(
                name=s.name,
                status=str(s.status),
                execution_type=str(s.execution_type),
                started_at=from_unix(s.started_at),
                completed_at=from_unix(s.completed_at),
                error_message=s.error_message,
                retryable=s.retryable,
                skippable=s.skippable,
            )
            for s in op.steps
        ],
    )


def short_type(op_type: str) -> str:
    """``cluster.delete`` -> ``delete``."""
    return op_type.rsplit(".", 1)[-1] if op_type else "operation"


def progress(op: OperationStatus) -> str:
    """``delete 2/4 delete_workers`` while running; ``delete 4/4 SUCCEEDED`` when done."""
    kind = short_type(op.type)
    total = len(op.steps)
    if total == 0:
        return f"{kind} {op.state}" if op.done else f"{kind} starting"
    if op.done:
        finished = sum(1 for s in op.steps if s.status in DONE_STEP_STATES)
        failed = next((s for s in op.steps if s.status == "failed"), None)
        if failed is not None:
            index = op.steps.index(failed) + 1
            return f"{kind} {index}/{total} {op.state} {failed.name}"
        return f"{kind} {finished}/{total} {op.state}"
    for index, step in enumerate(op.steps, start=1):
        if step.status not in DONE_STEP_STATES:
            waiting = (
                " (waiting for a person)" if step.execution_type in ("user", "approval") else ""
            )
            return f"{kind} {index}/{total} {step.name}{waiting}"
    return f"{kind} {total}/{total} finishing"


def failed_step(op: OperationStatus) -> OperationStepStatus | None:
    for step in reversed(op.steps):
        if step.status == "failed":
            return step
    return None


def failure_text(op: OperationStatus) -> str:
    """Why an ended operation did not succeed: ``"<STATE>[ at step <name>]: <why>"``, where why
    is the operation's error, else the failed step's error, else the state."""
    step = failed_step(op)
    why = (
        (op.error.message if op.error else "")
        or (step.error_message if step and step.error_message else "")
        or op.state
    )
    where = f" at step {step.name}" if step else ""
    return f"{op.state}{where}: {why}"


def step_events(old: OperationStatus | None, new: OperationStatus) -> list[Event]:
    """One Event per step whose status changed (new steps included), in Akua's order."""
    before: dict[str, str] = {}
    if old is not None and old.id == new.id:
        before = {s.name: s.status for s in old.steps}
    events: list[Event] = []
    total = len(new.steps)
    kind = short_type(new.type)
    for index, step in enumerate(new.steps, start=1):
        if before.get(step.name) == step.status:
            continue
        if step.name not in before and step.status == "pending":
            continue
        detail = f": {step.error_message}" if step.error_message else ""
        events.append(
            Event(
                type=EventType.WARNING if step.status == "failed" else EventType.NORMAL,
                reason="OperationStep",
                message=(
                    f"{kind} step {index}/{total} {step.name} {step.status}{detail} "
                    f"(operation {new.id}, {new.html_url or 'no url'})"
                ),
            )
        )
    return events


# --- patches --------------------------------------------------------------------------------


def merge_patch(old: Any, new: Any) -> Any:
    """RFC 7386 JSON merge patch turning ``old`` into ``new`` (lists replaced whole)."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = merge_patch(old[key], value) if isinstance(value, dict) else value
    return patch


def status_patch(old: AkuaClusterStatus, new: AkuaClusterStatus) -> dict[str, Any] | None:
    diff = merge_patch(old.dump(), new.dump())
    return diff or None


def clip(text: str, limit: int = 900) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join(parts: Iterable[str]) -> str:
    return "; ".join(p for p in parts if p)
