"""Deletion: what to do for an AkuaCluster whose ``metadata.deletionTimestamp`` is set.

The flow (docs/deletion.md tells it for users):

1. ``akua.dev/orphan: "true"`` or ``deletion.policy: Orphan``: release at once, no API call.
   Then the CRD guard (core/guards.py): the AkuaCluster CRD is being deleted: release without
   deleting. A DELETE that starts a new attempt is ``budgeted`` (the runtime's deletion budget
   may defer it: ``DeleteDeferred``) unless ``akua.dev/approve-delete: "true"``.
2. An operation recorded in status and not done: follow it (resume after a restart).
3. A DELETE recorded as pending: resend it unchanged (same if-match, same idempotency key), so a
   crash or a timeout never starts a second operation.
4. Otherwise send DELETE with ``if-match`` = the etag (the stored one for the first attempt, a
   freshly read one for every later request) and the key ``<uid>-delete-<attempt>-<request>``.
   The key and the etag are recorded in status *before* the request goes out, and the
   returned operation id is recorded before anything waits on it.
5. Follow the operation with ``:wait``; mirror it and its steps; an Event per step change.
6. SUCCEEDED or 404: release. FAILED/CANCELLED: retry (retryable failed step, up to
   ``maxRetries``, with backoff), then ``onFailure`` Release or Retain.
7. 409: follow the running operation it names (attach to a delete, wait for anything else), or
   take the current etag from the error, or re-read the cluster; never resend a stale etag.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from akua_operator.akua.errors import AkuaConflict, AkuaError, AkuaHTTPError, AkuaNotFound
from akua_operator.akua.models import Operation
from akua_operator.core import failures, guards
from akua_operator.core.lifecycle import (
    REASON_OUTCOME_UNKNOWN,
    cluster_id_mismatch,
    mark_outcome_unknown,
    outcome_still_unknown,
    outcome_unknown_message,
    stall_mismatch,
    unanswered_create,
)
from akua_operator.core.lifecycle_actions import CreateCluster
from akua_operator.core.status import (
    STALLED,
    backoff,
    clip,
    condition,
    credentials_identity,
    failed_step,
    failure_text,
    mark_stalled,
    mirror_operation,
    parse_time,
    progress,
    record_cluster,
    record_observed_with,
    rfc3339,
    set_condition,
    set_kstatus,
    short_type,
    step_events,
)
from akua_operator.core.types import (
    Action,
    ApiFailed,
    ClusterGone,
    ClusterObserved,
    CredentialsUnavailable,
    DeleteCluster,
    DeleteDeferred,
    Event,
    EventType,
    Facts,
    FollowOperation,
    Observation,
    ObserveCluster,
    OperationObserved,
    Release,
    Requeue,
)
from akua_operator.resource.models import (
    ANNOTATION_ORPHAN,
    ANNOTATION_RETRY,
    AkuaClusterStatus,
    ConditionStatus,
    DeletionPolicy,
    DeletionStatus,
    OnFailure,
    OperationStatus,
)

DELETE_TYPE = "cluster.delete"
CREATE_TYPE = "cluster.create"

REASON_DELETING = "Deleting"
REASON_DELETE_FAILED = "DeleteFailed"
REASON_DELETE_RETAINED = "DeleteRetained"
REASON_WAITING = "WaitingForOperation"
REASON_CREDENTIALS_CHANGED = "CredentialsChanged"
REASON_STARTED = "DeleteStarted"
REASON_ATTACHED = "DeleteAttached"
#: A delete operation that started this long before our DELETE was decided was already running
#: (allows for clock skew between the operator and Akua).
ATTACH_MARGIN = timedelta(seconds=5)


def idempotency_key(uid: str, attempt: int, request: int) -> str:
    """Derived from the resource uid and the attempt (and the request within it): <= 64 chars."""
    return f"{uid}-delete-{attempt}-{request}"[:64]


def orphan_requested(annotations: dict[str, str]) -> bool:
    return annotations.get(ANNOTATION_ORPHAN, "").strip().lower() == "true"


def decide_deletion(
    facts: Facts, status: AkuaClusterStatus, obs: Observation, events: list[Event]
) -> Action:
    """Mutates ``status`` and ``events``; returns the next action.

    kopf does not run a delete handler again before its TemporaryError delay ends, not even
    when an annotation changes, so every Requeue is at most ``tuning.max_requeue``: a longer
    backoff is recorded as ``status.deletion.nextAttemptAt`` and served by short requeues that
    make no Akua call until it passes, so akua.dev/orphan and akua.dev/retry act within
    ``max_requeue`` seconds.
    """
    action = _decide_deletion(facts, status, obs, events)
    limit = facts.tuning.max_requeue
    if isinstance(action, Requeue) and action.delay > limit:
        deletion = _deletion(status)
        until = facts.now + timedelta(seconds=action.delay)
        current = parse_time(deletion.next_attempt_at)
        if current is None or current < until.replace(microsecond=0):
            deletion.next_attempt_at = rfc3339(until)
        return Requeue(limit, action.reason)
    return action


def _recheck(facts: Facts, reason: str) -> Requeue:
    """Come back to look at the resource again (no Akua call pending)."""
    return Requeue(min(facts.tuning.retain_recheck, facts.tuning.max_requeue), reason)


def _decide_deletion(
    facts: Facts, status: AkuaClusterStatus, obs: Observation, events: list[Event]
) -> Action:
    if orphan_requested(facts.meta.annotations):
        return _release_orphan(facts, status, events, "the annotation akua.dev/orphan is true")
    if facts.spec.deletion.policy == DeletionPolicy.ORPHAN:
        return _release_orphan(facts, status, events, "deletion.policy is Orphan")
    # --- guards (core/guards.py): the CRD guard comes right after the orphan checks ---
    if (released := guards.crd_guard(facts, status, events)) is not None:
        return released
    if status.deletion is None:
        status.deletion = DeletionStatus()

    match obs:
        case None:
            return _start(facts, status, events)
        case ClusterObserved(cluster=cluster):
            _unstall(status, facts)
            status.api_errors = 0
            record_cluster(status, cluster)
            record_observed_with(status, facts)
            status.observed_generation = facts.meta.generation
            return _send_delete(facts, status, cluster.id, cluster.etag)
        case ClusterGone(cluster_id=cluster_id, via=via):
            status.api_errors = 0
            changed = _credentials_changed(facts, status, events, cluster_id, via)
            if changed is not None:
                return changed
            _unstall(status, facts)
            return _release_gone(status, events, cluster_id, via)
        case OperationObserved(operation=op, accepted=accepted):
            _unstall(status, facts)
            status.api_errors = 0
            return _on_operation(facts, status, events, op, accepted=accepted)
        case ApiFailed(error=error, action=action):
            return _on_failure(facts, status, events, error, action)
        case CredentialsUnavailable(message=message):
            outcome = failures.credentials_unavailable(status, facts, message)
            events.extend(outcome.events)
            return outcome.action
        case DeleteDeferred():  # guards: the deletion budget refused a new DELETE
            return guards.on_deferred(facts, status, events, obs)
    raise AssertionError(f"unknown observation {obs!r}")  # pragma: no cover


# --- the start of a cycle ------------------------------------------------------------------


def _cluster_id(facts: Facts, status: AkuaClusterStatus) -> str | None:
    return facts.spec.cluster_id or status.cluster_id


def _start(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    deletion = _deletion(status)
    mismatch = cluster_id_mismatch(facts, status)
    if mismatch is not None:
        stall_mismatch(facts, status, events, mismatch)
        return _recheck(facts, "spec.clusterId differs from status.clusterId")
    if deletion.retained_generation is None:
        wait = _not_before(facts, deletion)
        if wait > 0:  # a backoff is being served: no Akua call before nextAttemptAt
            return Requeue(min(wait, facts.tuning.max_requeue), "backing off")
    op = status.operation
    if op is not None and not op.done:
        _deleting(status, facts, _op_message(op))
        return FollowOperation(op.id, wait=False)
    cluster_id = _cluster_id(facts, status)
    if cluster_id is None:
        if outcome_still_unknown(facts, status):
            assert status.lifecycle is not None
            message = outcome_unknown_message(status.lifecycle, deleting=True)
            mark_stalled(status, facts, REASON_OUTCOME_UNKNOWN, message)
            return _recheck(facts, "the outcome of a resent create is unknown")
        resend = unanswered_create(facts, status)
        if resend is not None:
            # A create whose answer was never recorded: learn its operation (same key), follow
            # it, then delete what it made (core/lifecycle.py).
            events.append(
                Event(
                    EventType.NORMAL,
                    "CreateUnanswered",
                    "A create request was sent but its answer never recorded; asking Akua "
                    "again with the same idempotency key to find the cluster to delete",
                )
            )
            _deleting(status, facts, "learning the outcome of an unanswered create")
            return resend
        events.append(
            Event(EventType.NORMAL, "Released", "No Akua cluster was recorded: nothing to delete")
        )
        return Release("no Akua cluster to delete")
    if deletion.pending and deletion.if_match and deletion.idempotency_key:
        _deleting(status, facts, f"resending DELETE of attempt {deletion.attempt}")
        return DeleteCluster(cluster_id, deletion.if_match, deletion.idempotency_key)
    if deletion.retained_generation is not None:
        return _retained(facts, status, events, cluster_id)
    if op is not None and op.type == DELETE_TYPE and op.id == deletion.operation_id:
        # The operation of this attempt ended: (re)apply the verdict recorded with it.
        return _after_end(facts, status, events, op, cluster_id, fresh=False)
    if deletion.attempt == 0 and status.etag:
        return _send_delete(facts, status, cluster_id, status.etag)
    if deletion.conflicts > facts.tuning.max_conflicts:
        delay = _not_before(facts, deletion)
        if delay > 0:
            return Requeue(delay, "the cluster keeps changing")
    _deleting(status, facts, "reading the cluster's current etag")
    return ObserveCluster(cluster_id)


def _started_before_request(raw: Operation, deletion: DeletionStatus) -> bool:
    requested = parse_time(deletion.requested_at)
    if requested is None:
        return False
    started = datetime.fromtimestamp(raw.started_at, tz=UTC)
    return started < requested - ATTACH_MARGIN


def _not_before(facts: Facts, deletion: DeletionStatus) -> float:
    moment = parse_time(deletion.next_attempt_at)
    if moment is None:
        return 0.0
    return max(0.0, (moment - facts.now).total_seconds())


# --- sending DELETE ------------------------------------------------------------------------


def _send_delete(facts: Facts, status: AkuaClusterStatus, cluster_id: str, etag: str) -> Action:
    deletion = _deletion(status)
    budgeted = False
    if deletion.operation_id is not None or deletion.attempt == 0:
        deletion.attempt += 1  # a new attempt: the previous one ended with an operation
        deletion.operation_id = None
        deletion.conflicts = 0
        # guards: a new attempt counts against the deletion budget unless approved
        budgeted = not guards.delete_approved(facts.meta.annotations)
    deletion.requests += 1
    deletion.pending = True
    deletion.if_match = etag
    deletion.idempotency_key = idempotency_key(facts.meta.uid, deletion.attempt, deletion.requests)
    deletion.requested_at = rfc3339(facts.now)
    deletion.next_attempt_at = None
    _deleting(status, facts, f"sending DELETE (attempt {deletion.attempt})")
    return DeleteCluster(cluster_id, etag, deletion.idempotency_key, budgeted=budgeted)


# --- operations ----------------------------------------------------------------------------


def _on_operation(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    raw: Operation,
    *,
    accepted: bool,
) -> Action:
    op = mirror_operation(raw)
    deletion = _deletion(status)
    previous = status.operation
    if accepted:
        deletion.pending = False
    if op.type == DELETE_TYPE and deletion.operation_id != op.id:
        # Akua answers a DELETE on a cluster already being deleted with that running delete
        # (202, the same operation): that one started before our request.
        running = accepted and _started_before_request(raw, deletion)
        attached = running or not accepted
        deletion.operation_id = op.id
        deletion.conflicts = 0
        deletion.pending = False
        cid = _cluster_id(facts, status) or "?"
        detail = f"(attempt {deletion.attempt}, operation {op.id}, {op.html_url})"
        if running:
            text = (
                f"Attached to the delete of Akua cluster {cid} that was already running (started "
                f"{op.started_at}, before this request) {detail}"
            )
        elif attached:
            text = f"Attached to the running delete of Akua cluster {cid} {detail}"
        else:
            text = f"Started delete of Akua cluster {cid} {detail}"
        events.append(
            Event(EventType.NORMAL, REASON_ATTACHED if attached else REASON_STARTED, text)
        )
    events.extend(step_events(previous, op))
    status.operation = op
    status.progress = progress(op)
    cluster_id = _cluster_id(facts, status)

    if op.type == CREATE_TYPE and op.done:
        created = raw.created_cluster_id
        if created is not None and status.cluster_id is None:
            status.cluster_id = created
            cluster_id = created
            record_observed_with(status, facts)
    if not op.done:
        _deleting(status, facts, _op_message(op))
        return FollowOperation(op.id, wait=True)
    if cluster_id is None:
        events.append(Event(EventType.NORMAL, "Released", "No Akua cluster to delete"))
        return Release("no Akua cluster to delete")
    if op.type == DELETE_TYPE and op.id == deletion.operation_id:
        return _after_end(facts, status, events, op, cluster_id, fresh=True)
    # Another operation (create, suspend, ...) ended: now delete, with a fresh etag.
    _deleting(status, facts, f"{short_type(op.type)} operation {op.id} ended; deleting")
    return ObserveCluster(cluster_id)


def _after_end(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    op: OperationStatus,
    cluster_id: str,
    *,
    fresh: bool,
) -> Action:
    """The delete operation of this attempt is done: release, retry, or give up."""
    deletion = _deletion(status)
    spec = facts.spec.deletion
    if op.state == "SUCCEEDED":
        status.state = None
        status.reconciling = None
        status.etag = None
        events.append(
            Event(
                EventType.NORMAL,
                "Deleted",
                f"Akua cluster {cluster_id} deleted (operation {op.id}, {op.html_url})",
            )
        )
        return Release("the delete operation succeeded")
    step = failed_step(op)
    failure = failure_text(op)
    retryable = bool(step is not None and step.retryable)
    if fresh:
        deletion.failures += 1
        deletion.last_failure = clip(failure, 500)
    if retryable and deletion.failures <= spec.max_retries:
        if fresh or deletion.next_attempt_at is None:
            delay = backoff(
                deletion.failures, facts.tuning.delete_retry_base, facts.tuning.backoff_cap
            )
            deletion.next_attempt_at = rfc3339(facts.now + timedelta(seconds=delay))
            message = (
                f"delete {failure}; retry {deletion.failures}/{spec.max_retries} "
                f"in {delay:g}s ({op.html_url})"
            )
            events.append(Event(EventType.WARNING, "DeleteRetrying", clip(message)))
            _deleting(status, facts, clip(message))
        delay = _not_before(facts, deletion)
        if delay > 0:
            return Requeue(delay, "backoff before the next delete attempt")
        _deleting(status, facts, f"retrying the delete (attempt {deletion.attempt + 1})")
        return ObserveCluster(cluster_id)
    exhausted = (
        f"after {deletion.failures} failed attempts"
        if retryable
        else "(the failed step is not retryable)"
    )
    if spec.on_failure == OnFailure.RELEASE:
        message = clip(
            f"Deleting Akua cluster {cluster_id} failed {exhausted}: {failure}. "
            f"onFailure is Release: the finalizer is released and the Akua cluster may still "
            f"exist ({op.html_url})"
        )
        events.append(Event(EventType.WARNING, REASON_DELETE_FAILED, message))
        return Release(message)
    # Retain: keep the finalizer until the spec or the akua.dev/retry annotation changes.
    deletion.retained_generation = facts.meta.generation
    deletion.retained_retry_token = facts.meta.annotations.get(ANNOTATION_RETRY)
    message = clip(
        f"Deleting Akua cluster {cluster_id} failed {exhausted}: {failure}. "
        f"onFailure is Retain: the finalizer stays; change the spec or set the annotation "
        f"akua.dev/retry to a new value to try again, or set akua.dev/orphan=true to release "
        f"without deleting ({op.html_url})"
    )
    mark_stalled(status, facts, REASON_DELETE_RETAINED, message)
    events.append(Event(EventType.WARNING, REASON_DELETE_RETAINED, message))
    return _recheck(facts, "retained")


def _retained(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], cluster_id: str
) -> Action:
    deletion = _deletion(status)
    token = facts.meta.annotations.get(ANNOTATION_RETRY)
    if (
        facts.meta.generation == deletion.retained_generation
        and token == deletion.retained_retry_token
    ):
        return _recheck(facts, "retained")
    trigger = (
        "the spec changed"
        if facts.meta.generation != deletion.retained_generation
        else f"akua.dev/retry changed to {token!r}"
    )
    deletion.retained_generation = None
    deletion.retained_retry_token = None
    deletion.failures = 0
    deletion.next_attempt_at = None
    events.append(
        Event(EventType.NORMAL, "DeleteRetry", f"Retrying the delete of {cluster_id}: {trigger}")
    )
    _deleting(status, facts, f"retrying the delete: {trigger}")
    return ObserveCluster(cluster_id)


# --- failures ------------------------------------------------------------------------------


def _on_failure(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    error: AkuaError,
    action: Action,
) -> Action:
    deletion = _deletion(status)
    cluster_id = _cluster_id(facts, status)
    if (
        isinstance(action, CreateCluster)
        and isinstance(error, AkuaHTTPError)
        and error.status in (400, 409, 422)
    ):
        # The resent create was refused: the first request may still have made a cluster.
        # Never release on this (that would orphan it) and never create anew: Stalled until
        # the user checks Akua (spec.clusterId, akua.dev/retry or akua.dev/orphan).
        mark_outcome_unknown(facts, status, events, action, error)
        return _recheck(facts, "the outcome of a resent create is unknown")
    if isinstance(action, DeleteCluster) and isinstance(error, AkuaConflict):
        return _on_conflict(facts, status, events, error, action)
    if isinstance(action, FollowOperation) and isinstance(error, AkuaNotFound):
        # The operation vanished: forget it and look at the cluster.
        if status.operation is not None and status.operation.id == action.operation_id:
            status.operation = None
            status.progress = None
        if deletion.operation_id == action.operation_id:
            deletion.operation_id = None
        status.api_errors = 0
        if cluster_id is None:
            return Release("no Akua cluster to delete")
        return ObserveCluster(cluster_id)
    if (requeue := failures.wait_unavailable(status, facts, error, action)) is not None:
        return requeue
    if (
        isinstance(action, DeleteCluster)
        and isinstance(error, AkuaHTTPError)
        and error.status in (400, 422)
    ):
        # The server refused this request for good: the next one gets a fresh etag and key.
        deletion.pending = False
    doing = f"deleting Akua cluster {cluster_id}"
    outcome = failures.api_failure(status, facts, error, doing)
    events.extend(outcome.events)
    return outcome.action


def _on_conflict(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    error: AkuaConflict,
    action: DeleteCluster,
) -> Action:
    deletion = _deletion(status)
    deletion.pending = False  # this request is answered; never resend it (stale etag)
    status.api_errors = 0
    active = error.active_operation_id
    if active:
        events.append(
            Event(
                EventType.NORMAL,
                REASON_WAITING,
                f"Operation {active} is running on Akua cluster {action.cluster_id}; "
                f"following it before deleting",
            )
        )
        _deleting(status, facts, f"waiting for operation {active} to end before deleting")
        return FollowOperation(active, wait=False)
    deletion.conflicts += 1
    if error.etag:
        status.etag = error.etag
    events.append(
        Event(
            EventType.NORMAL,
            "ClusterChanged",
            f"Akua cluster {action.cluster_id} changed since it was last observed (etag "
            f"mismatch); retrying the delete with the current etag",
        )
    )
    if deletion.conflicts > facts.tuning.max_conflicts:
        delay = backoff(
            deletion.conflicts - facts.tuning.max_conflicts,
            facts.tuning.backoff_base,
            facts.tuning.backoff_cap,
        )
        deletion.next_attempt_at = rfc3339(facts.now + timedelta(seconds=delay))
        _deleting(status, facts, f"the cluster keeps changing; retrying in {delay:g}s")
        return Requeue(delay, "the cluster keeps changing")
    if error.etag:
        return _send_delete(facts, status, action.cluster_id, error.etag)
    _deleting(status, facts, "re-reading the cluster after an etag mismatch")
    return ObserveCluster(action.cluster_id)


# --- releases ------------------------------------------------------------------------------


def _release_orphan(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], why: str
) -> Action:
    cluster_id = _cluster_id(facts, status) or "(none)"
    events.append(
        Event(
            EventType.NORMAL,
            "Orphaned",
            f"Released without deleting Akua cluster {cluster_id}: {why}",
        )
    )
    return Release(f"orphaned: {why}")


def _credentials_changed(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], cluster_id: str, via: str
) -> Action | None:
    """A 404 proves the cluster is gone only to the credentials that saw it: other ones (a
    wrong workspace or token) may look into another workspace. None when the 404 can be
    trusted (same credentials, or the cluster was never observed)."""
    recorded = status.credentials_identity
    current = credentials_identity(facts)
    if recorded is None or recorded == current:
        return None
    message = clip(
        f"Akua answered 404 for cluster {cluster_id} ({via}), but the credentials changed since "
        f"it was last observed (then: {recorded}; now: {current}): they may see another "
        f"workspace, so the finalizer stays. Restore the credentials (the operator retries every "
        f"{facts.tuning.credentials_backoff:g}s), or, if the cluster is really gone, set "
        f"akua.dev/orphan=true to release this resource"
    )
    stalled = condition(status, STALLED)
    if (
        stalled is None
        or stalled.status != ConditionStatus.TRUE
        or stalled.reason != (REASON_CREDENTIALS_CHANGED)
    ):
        events.append(Event(EventType.WARNING, REASON_CREDENTIALS_CHANGED, message))
    mark_stalled(status, facts, REASON_CREDENTIALS_CHANGED, message)
    return Requeue(facts.tuning.credentials_backoff, REASON_CREDENTIALS_CHANGED)


def _release_gone(
    status: AkuaClusterStatus, events: list[Event], cluster_id: str, via: str
) -> Action:
    status.state = None
    status.reconciling = None
    status.etag = None
    events.append(
        Event(
            EventType.NORMAL,
            "AlreadyGone",
            f"Akua cluster {cluster_id} does not exist (404 on {via}); releasing",
        )
    )
    return Release("the Akua cluster is already gone")


# --- helpers -------------------------------------------------------------------------------


def _deletion(status: AkuaClusterStatus) -> DeletionStatus:
    if status.deletion is None:
        status.deletion = DeletionStatus()
    return status.deletion


def _op_message(op: OperationStatus) -> str:
    text = f"{progress(op)} (operation {op.id})"
    if op.last_error is not None:
        text += f"; last error: {op.last_error.message}"
    return clip(text)


def _unstall(status: AkuaClusterStatus, facts: Facts) -> None:
    """Akua answered: whatever stalled us (credentials, bad responses) is over."""
    stalled = condition(status, STALLED)
    if stalled is not None and stalled.status == ConditionStatus.TRUE:
        set_condition(status, facts, STALLED, False, REASON_DELETING, "")


def _deleting(status: AkuaClusterStatus, facts: Facts, message: str) -> None:
    """Conditions while deleting; a Stalled=True stays until Akua answers again."""
    if status.operation is not None:
        status.progress = progress(status.operation)
    stalled = condition(status, STALLED)
    if stalled is not None and stalled.status == ConditionStatus.TRUE:
        return
    set_kstatus(
        status,
        facts,
        ready=(False, REASON_DELETING, "the resource is being deleted"),
        reconciling=(True, REASON_DELETING, message),
        stalled=(False, REASON_DELETING, ""),
    )
