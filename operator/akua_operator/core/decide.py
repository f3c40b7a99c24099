"""The single entry point of the decision core."""

from __future__ import annotations

from dataclasses import replace

from akua_operator.core.deletion import decide_deletion
from akua_operator.core.lifecycle import decide_lifecycle
from akua_operator.core.status import EVENT_LIMIT, clip_text, redact, status_patch
from akua_operator.core.types import Decision, Event, Facts, Observation


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
    for i, cond in enumerate(status.conditions):
        if (clean := redact(cond.message)) != cond.message:
            status.conditions[i] = cond.model_copy(update={"message": clean})
    return Decision(
        action=action,
        status=status,
        status_patch=status_patch(facts.status, status),
        events=tuple(Event(e.type, e.reason, clip_text(e.message, EVENT_LIMIT)) for e in events),
    )


def advance(facts: Facts, decision: Decision) -> Facts:
    """The facts after ``decision`` was applied (its status written)."""
    return replace(facts, status=decision.status)
