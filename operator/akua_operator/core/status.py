"""Pure helpers to build the status: timestamps, conditions, operation mirror, progress, patches."""

from __future__ import annotations

import re
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


def rfc3339_micro(moment: datetime) -> str:
    """RFC 3339 with microseconds: two stamps taken a moment apart differ."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


#: Limits on free text from Akua mirrored into status and Events: a status PATCH that is too
#: large fails every time, so one huge message must never reach it.
TEXT_LIMIT = 1024  # error messages
NAME_LIMIT = 256  # names, states, types, etags (identifiers with no limit in the contract)
EVENT_LIMIT = 1024  # Event messages
MAX_STEPS = 50  # steps of one operation mirrored into status
_STEPS_BEFORE_FOCUS = 10  # of the mirrored window, steps shown before the current/failed one


# Secrets that might hide in free text (an error message echoing a request): an Akua token, an
# HTTP Authorization credential, a "token: ..." / "password=..." pair. Akua's messages should
# never hold one; status and Events are read by many, so the core removes any it sees.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sk_akua_[A-Za-z0-9_\-]+"), "sk_akua_[REDACTED]"),
    (re.compile(r"\b([Bb]earer|Basic)(\s+)[A-Za-z0-9\-._~+/]+=*"), r"\1\2[REDACTED]"),
    (
        re.compile(
            r"(?i)((?:client[-_]key[-_]data|[\w-]{0,64}token|password|secret)[\"']?\s*[:=]\s*[\"']?)"
            r"(?!\[REDACTED\])[^\s\"',}\]]+"
        ),
        r"\1[REDACTED]",
    ),
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a secret replaced by ``[REDACTED]``."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def clip_text(text: str, limit: int = TEXT_LIMIT, *, secrets: bool = True) -> str:
    """``text`` without secrets, cut to at most ``limit`` characters with a marker saying how
    much was cut. ``secrets=False`` for identifiers sent back to Akua (ids, etags)."""
    original = len(text)
    if secrets:
        text = redact(text[: limit + 64])  # cut first: never scan megabytes
    if original <= limit and len(text) <= limit:
        return text
    longest = len(f"... [{original} more characters cut]")  # the marker is never longer
    keep = max(0, limit - longest)
    return text[:keep] + f"... [{max(0, original - keep)} more characters cut]"


def _clip_opt(text: str | None, limit: int = TEXT_LIMIT) -> str | None:
    return None if text is None else clip_text(text, limit)


def record_cluster(status: AkuaClusterStatus, cluster: Cluster) -> None:
    status.cluster_id = clip_text(cluster.id, NAME_LIMIT, secrets=False)
    status.html_url = clip_text(cluster.html_url, 2048)
    status.name = clip_text(cluster.name, NAME_LIMIT)
    status.workspace_id = clip_text(cluster.workspace_id, NAME_LIMIT)
    status.provider = clip_text(str(cluster.provider), NAME_LIMIT)
    status.state = clip_text(str(cluster.state), NAME_LIMIT)
    status.reconciling = cluster.reconciling
    status.etag = clip_text(cluster.etag, TEXT_LIMIT, secrets=False)


def credentials_identity(facts: Facts) -> str:
    """Which credentials the operator uses for this resource, without any secret: the Secret's
    name and key (or the operator's default) and the workspace. Never the token or a hash."""
    if facts.credentials_identity is not None:
        return facts.credentials_identity
    creds = facts.spec.credentials
    ref = creds.secret_ref if creds is not None else None
    who = f"Secret {ref.name} key {ref.key}" if ref is not None else "operator default"
    workspace = creds.workspace_id if creds is not None else None
    return f"{who}, workspace {workspace}" if workspace else who


def record_observed_with(status: AkuaClusterStatus, facts: Facts) -> None:
    """Akua showed this resource's cluster with the current credentials: remember which."""
    status.credentials_identity = clip_text(credentials_identity(facts), NAME_LIMIT)


def _step_window(op: Operation) -> tuple[int, int]:
    """(offset, length) of the at most MAX_STEPS steps to mirror: around the failed step, else
    the first step not done, else the last ones."""
    steps = op.steps
    if len(steps) <= MAX_STEPS:
        return 0, len(steps)
    focus = next((i for i, s in enumerate(steps) if str(s.status) == "failed"), None)
    if focus is None:
        focus = next(
            (i for i, s in enumerate(steps) if str(s.status) not in DONE_STEP_STATES),
            len(steps) - 1,
        )
    start = max(0, min(focus - _STEPS_BEFORE_FOCUS, len(steps) - MAX_STEPS))
    return start, MAX_STEPS


def mirror_operation(op: Operation) -> OperationStatus:
    """The status mirror of ``op``: every free text clipped, at most MAX_STEPS steps."""
    offset, length = _step_window(op)
    omitted = len(op.steps) - length
    return OperationStatus(
        id=clip_text(op.id, NAME_LIMIT, secrets=False),
        type=clip_text(op.type, NAME_LIMIT),
        state=clip_text(str(op.state), NAME_LIMIT),
        done=op.done,
        html_url=_clip_opt(op.html_url, 2048),
        started_at=from_unix(op.started_at),
        completed_at=from_unix(op.completed_at),
        error=OperationErrorStatus(message=clip_text(op.error.message)) if op.error else None,
        last_error=(
            OperationLastErrorStatus(
                message=clip_text(op.last_error.message),
                step_name=_clip_opt(op.last_error.step_name, NAME_LIMIT),
            )
            if op.last_error
            else None
        ),
        steps=[
            OperationStepStatus(
                name=clip_text(s.name, NAME_LIMIT),
                status=clip_text(str(s.status), NAME_LIMIT),
                execution_type=clip_text(str(s.execution_type), NAME_LIMIT),
                started_at=from_unix(s.started_at),
                completed_at=from_unix(s.completed_at),
                error_message=_clip_opt(s.error_message),
                retryable=s.retryable,
                skippable=s.skippable,
            )
            for s in op.steps[offset : offset + length]
        ],
        steps_offset=offset if omitted else None,
        steps_omitted=omitted if omitted else None,
    )


def short_type(op_type: str) -> str:
    """``cluster.delete`` -> ``delete``."""
    return op_type.rsplit(".", 1)[-1] if op_type else "operation"


def progress(op: OperationStatus) -> str:
    """``delete 2/4 delete_workers`` while running; ``delete 4/4 SUCCEEDED`` when done."""
    kind = short_type(op.type)
    offset = op.steps_offset or 0
    total = len(op.steps) + (op.steps_omitted or 0)
    if total == 0:
        return f"{kind} {op.state}" if op.done else f"{kind} starting"
    if op.done:
        failed = next((s for s in op.steps if s.status == "failed"), None)
        if failed is not None:
            index = offset + op.steps.index(failed) + 1
            return f"{kind} {index}/{total} {op.state} {failed.name}"
        finished = sum(1 for s in op.steps if s.status in DONE_STEP_STATES)
        if op.steps_omitted:  # steps before the window are done; after it, not known
            finished += offset
        return f"{kind} {finished}/{total} {op.state}"
    for index, step in enumerate(op.steps, start=offset + 1):
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
    total = len(new.steps) + (new.steps_omitted or 0)
    kind = short_type(new.type)
    for index, step in enumerate(new.steps, start=(new.steps_offset or 0) + 1):
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
    text = redact(text[: limit + 64])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join(parts: Iterable[str]) -> str:
    return "; ".join(p for p in parts if p)
