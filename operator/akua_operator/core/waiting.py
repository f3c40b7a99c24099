"""``status.waitingFor``: what the resource waits for, in one short line a person and a script
can read (``kubectl akua status`` shows it). Written by :func:`akua_operator.core.decide` after
every decision, from the status it just wrote and the action it chose: the reasoning stays in
the core, the plugin only renders it. What a person can do is in the ``Stalled`` (or
``Reconciling``) condition's message, which the core writes with the way out.

The line starts with who or what is awaited: ``akua:`` (an Akua operation or answer),
``person:`` (only a person can move it on; the reason names the condition), ``backoff:`` (a
wait the operator serves by itself), ``budget:`` (the deletion budget), ``operator:`` (the
operator's own next step). None: nothing to wait for (Ready, or released).
"""

from __future__ import annotations

from akua_operator.core.status import RECONCILING, STALLED, condition, parse_time
from akua_operator.core.types import Action, FollowOperation, Idle, Release, Requeue
from akua_operator.resource.models import AkuaClusterStatus, ConditionStatus

APPROVAL_TYPES = ("user", "approval")


def waiting_for(status: AkuaClusterStatus, action: Action, *, deleting: bool) -> str | None:
    if isinstance(action, Release):
        return None
    stalled = condition(status, STALLED)
    if stalled is not None and stalled.status == ConditionStatus.TRUE:
        return f"person: {stalled.reason}"
    op = status.operation
    if op is not None and not op.done:
        running = next((s for s in op.steps if s.status not in ("completed", "skipped")), None)
        what = f"Akua operation {op.id} ({status.progress or op.type})"
        if running is not None and running.execution_type in APPROVAL_TYPES:
            where = f" at {op.html_url}" if op.html_url else ""
            return (
                f"person: step {running.name} of Akua operation {op.id} waits for approval in "
                f"Akua{where}"
            )
        return f"akua: {what}"
    reconciling = condition(status, RECONCILING)
    deletion = status.deletion
    if deleting and deletion is not None:
        if parse_time(deletion.next_attempt_at) is not None:
            why = f" ({deletion.last_failure})" if deletion.last_failure else ""
            return f"backoff: no new DELETE before {deletion.next_attempt_at}{why}"[:300]
        if reconciling is not None and reconciling.reason == "WaitingForDeletionBudget":
            return "budget: the operator's deletion budget (akua.dev/approve-delete=true skips it)"
        if deletion.pending:
            return "akua: the answer to DELETE (resent as is)"
    if isinstance(action, FollowOperation):
        return f"akua: operation {action.operation_id}"
    if reconciling is not None and reconciling.status == ConditionStatus.TRUE:
        return f"operator: {reconciling.reason}"
    if isinstance(action, Idle | Requeue) and not deleting:
        return None
    return "operator: deleting" if deleting else None
