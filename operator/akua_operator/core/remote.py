"""What the deletion and the lifecycle share about talking to Akua.

One place for: which workspace a call is sent to and when a 404 proves anything, what a 409
naming a running operation means and how conflicts back off, following an operation that
vanished, and whether the status still holds the records of what this resource did.

- **Workspace.** Clusters and operations carry ``workspace_id``. The first one Akua shows for
  this resource's cluster (or its create) is recorded in ``status.workspaceId``, and every
  later call about that cluster names it (``akua-context``): a token that cannot see that
  workspace is answered 403, never 404. So a 404 proves "gone" only for a call sent with the
  recorded workspace (:func:`proves_gone`). Before anything is recorded, calls name the spec's
  ``credentials.workspaceId`` (or nothing: the token's own workspace).
- **409 with an active operation.** Follow it, once; count it like an etag conflict, so an
  operation that already ended (Akua still names it) backs off after ``max_conflicts`` instead of
  looping, and tell it once per operation (:func:`waiting_event`).
- **Records.** A status that cannot be parsed, or that lacks what kopf's own record says
  happened (the resource was handled, yet no create key, no cluster id, no operation), is a
  status whose records were lost: "unknown", never "nothing happened" (:func:`records_lost`).
"""

from __future__ import annotations

from akua_operator.core.status import NAME_LIMIT, backoff, clip_text, credentials_identity
from akua_operator.core.types import Event, EventType, Facts, Tuning
from akua_operator.resource.models import ANNOTATION_LAST_HANDLED, AkuaClusterStatus

REASON_WAITING = "WaitingForOperation"
REASON_NOT_FOUND_UNVERIFIED = "NotFoundUnverified"
REASON_RECORDS_LOST = "RecordsLost"

# --- workspace --------------------------------------------------------------------------------


def spec_workspace(facts: Facts) -> str | None:
    creds = facts.spec.credentials
    return creds.workspace_id if creds is not None else None


def target_workspace(facts: Facts, status: AkuaClusterStatus) -> str | None:
    """The workspace a call about this resource's cluster is sent to (``akua-context``)."""
    return status.workspace_id or spec_workspace(facts)


def record_workspace(status: AkuaClusterStatus, workspace_id: str | None) -> None:
    """Remember the workspace Akua showed for this resource's cluster or operation (first seen)."""
    if workspace_id and status.workspace_id is None:
        status.workspace_id = workspace_id


def proves_gone(status: AkuaClusterStatus, workspace: str | None) -> bool:
    """A 404 for a call sent to ``workspace`` proves the cluster (or operation) gone."""
    return status.workspace_id is not None and workspace == status.workspace_id


def same_credentials(status: AkuaClusterStatus, facts: Facts) -> bool:
    """The credentials now are the ones recorded (compared as recorded: clipped). For display:
    what a 404 proves depends on the workspace only."""
    recorded = status.credentials_identity
    return recorded is None or recorded == clip_text(credentials_identity(facts), NAME_LIMIT)


# --- operations and conflicts -------------------------------------------------------------


def forget_operation(status: AkuaClusterStatus, operation_id: str) -> None:
    """Akua answered 404 for the operation: stop following it."""
    if status.operation is not None and status.operation.id == operation_id:
        status.operation = None
        status.progress = None


def conflict_backoff(conflicts: int, tuning: Tuning) -> float | None:
    """Seconds to wait after ``conflicts`` 409s in a row, or None while under the limit."""
    if conflicts <= tuning.max_conflicts:
        return None
    return backoff(conflicts - tuning.max_conflicts, tuning.backoff_base, tuning.backoff_cap)


def waiting_event(
    status: AkuaClusterStatus, active: str, cluster_id: str, before: str
) -> Event | None:
    """The Event for a 409 naming ``active``: once per operation (None when already told, i.e.
    that operation is the one mirrored in status)."""
    if status.operation is not None and status.operation.id == active:
        return None
    return Event(
        EventType.NORMAL,
        REASON_WAITING,
        f"Operation {active} is running on Akua cluster {cluster_id}; following it before {before}",
    )


# --- records ----------------------------------------------------------------------------------


def records_lost(facts: Facts, status: AkuaClusterStatus) -> str | None:
    """Why the status cannot be trusted to tell what this resource did, or None.

    "Nothing happened yet" (no create/import key, no cluster id, never handled) is not a loss;
    kopf's record that the resource was handled together with a status that holds no trace of
    any handling (the lifecycle writes ``status.lifecycle`` on every handling) is.
    """
    if facts.status_unreadable is not None:
        return f"its status cannot be read ({facts.status_unreadable})"
    handled = ANNOTATION_LAST_HANDLED in facts.meta.annotations
    if (
        handled
        and status.lifecycle is None
        and status.cluster_id is None
        and status.operation is None
    ):
        return (
            "kopf recorded that it was handled, yet its status holds no create or import "
            "request, no cluster id and no operation (the status was reset or lost)"
        )
    return None


def may_have_made_a_cluster(facts: Facts, status: AkuaClusterStatus) -> bool:
    """This resource sent (or may have sent) a create or import."""
    lc = status.lifecycle
    if lc is not None and lc.create_attempt > 0:
        return True
    return records_lost(facts, status) is not None


def cluster_id_of(facts: Facts, status: AkuaClusterStatus) -> str | None:
    """The Akua cluster this resource is about: the spec's (adopt) or the one it recorded."""
    return facts.spec.cluster_id or status.cluster_id
