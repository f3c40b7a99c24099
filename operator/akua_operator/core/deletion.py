"""Deletion: what to do for an AkuaCluster whose ``metadata.deletionTimestamp`` is set.

docs/deletion.md tells the flow for users; docs/design.md has the phase table and the
precedence of every rule that releases or holds without an Akua call. Each cycle starts in one
:class:`Phase` (:func:`phase_of`, in this order of precedence):

``Orphaned``  akua.dev/orphan or ``deletion.policy: Orphan``: release, no Akua call.
``CrdGuard``  the AkuaCluster CRD is being deleted: release, no Akua call (core/guards.py).
``Protected`` ``spec.deletion.protection: true`` and no DELETE sent yet: hold (Stalled
              ``DeletionProtected``), no Akua call, until the field is false (or orphan).
``Held``      something only a person can settle: unreadable or lost records, a spec.clusterId
              naming another cluster, a create/import whose outcome is unknown, a 404 that
              proves nothing. Stalled with a message saying how to get out; no Akua call.
``Backoff``   ``deletion.nextAttemptAt`` is in the future: no Akua call before it.
``Following`` an operation is recorded and not done: follow it (resume after a restart).
``Awaiting``  a 409 named a running operation (``deletion.awaitedOperationId``): follow it
              until it ends, then go on (a restart resumes the wait, never a new DELETE).
``Learning``  no cluster id, but a create was (maybe) sent: resend it under its key (same body,
              same workspace) to learn its operation, then delete what it made.
``Nothing``   nothing was ever created, imported or recorded: release.
``Deleting``  a DELETE is recorded as pending: resend it unchanged (same if-match, same key).
``Retained``  a failed delete was retained (onFailure Retain): wait for the spec or
              akua.dev/retry to change.
``Ended``     this attempt's delete operation ended: release, retry with backoff, or give up.
``Resolving`` send DELETE with the stored etag (first attempt) or read the current etag first.

What Akua answers moves the flow on: an operation is followed with ``:wait`` (SUCCEEDED
releases); a 404 for the cluster releases only when it proves "gone" (core/remote.py); a 409
follows the running operation it names or takes the current etag; failures back off.

A DELETE that starts a new attempt is ``budgeted``: the runtime's deletion budget (if on) may
defer it (``DeleteDeferred``, core/guards.py) unless ``akua.dev/approve-delete: "true"``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from akua_operator.akua.errors import AkuaConflict, AkuaError, AkuaHTTPError, AkuaNotFound
from akua_operator.akua.models import Operation, Provider
from akua_operator.core import failures, guards, tenancy
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
from akua_operator.core.remote import (
    REASON_NOT_FOUND_UNVERIFIED,
    REASON_RECORDS_LOST,
    conflict_backoff,
    forget_operation,
    may_have_made_a_cluster,
    proves_gone,
    record_workspace,
    records_lost,
    same_credentials,
    waiting_event,
)
from akua_operator.core.remote import cluster_id_of as _cluster_id
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
    rfc3339_micro,
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
    LifecycleStatus,
    OnFailure,
    OperationStatus,
)

DELETE_TYPE = "cluster.delete"
CREATE_TYPE = "cluster.create"

REASON_DELETING = "Deleting"
REASON_PROTECTED = "DeletionProtected"
REASON_DELETE_FAILED = "DeleteFailed"
REASON_DELETE_RETAINED = "DeleteRetained"
REASON_IMPORT_UNKNOWN = "ImportOutcomeUnknown"
REASON_CREATE_OPERATION_NOT_FOUND = "CreateOperationNotFound"
REASON_STARTED = "DeleteStarted"
REASON_ATTACHED = "DeleteAttached"
#: status.state while a delete operation runs (Akua's own cluster state then, contract decision 6).
STATE_DELETING = "deleting"
#: A delete operation that started this long before our DELETE was decided was already running
#: (allows for clock skew between the operator and Akua).
ATTACH_MARGIN = timedelta(seconds=5)


def idempotency_key(uid: str, attempt: int, request: int) -> str:
    """Derived from the resource uid and the attempt (and the request within it): <= 64 chars."""
    return f"{uid}-delete-{attempt}-{request}"[:64]


def orphan_requested(annotations: dict[str, str]) -> bool:
    return annotations.get(ANNOTATION_ORPHAN, "").strip().lower() == "true"


def orphan_asked(facts: Facts) -> bool:
    """A person asked to release without deleting: the annotation or ``deletion.policy``."""
    return orphan_requested(facts.meta.annotations) or (
        facts.spec.deletion.policy == DeletionPolicy.ORPHAN
    )


class Phase(StrEnum):
    """Where a deletion stands at the start of a cycle (docs/design.md: phase table)."""

    ORPHANED = "Orphaned"
    CRD_GUARD = "CrdGuard"
    PROTECTED = "Protected"
    HELD = "Held"
    BACKOFF = "Backoff"
    FOLLOWING = "Following"
    AWAITING = "Awaiting"
    LEARNING = "Learning"
    NOTHING = "Nothing"
    DELETING = "Deleting"
    RETAINED = "Retained"
    ENDED = "Ended"
    RESOLVING = "Resolving"


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
    if isinstance(action, Release):
        # The final status is never empty: the runtime hands it to kopf, whose status PATCH
        # then returns the resourceVersion its finalizer JSON patch tests (handlers/runtime.py).
        _deletion(status).released_at = rfc3339_micro(facts.now)
        return action
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
    # The rules that release without an Akua call, whatever the observation (precedence:
    # orphan annotation > policy Orphan > CRD guard > everything else).
    if orphan_requested(facts.meta.annotations):
        return _release_orphan(facts, status, events, "the annotation akua.dev/orphan is true")
    if facts.spec.deletion.policy == DeletionPolicy.ORPHAN:
        return _release_orphan(
            facts, status, events, "deletion.policy is Orphan", cause="policy-orphan"
        )
    # --- guards (core/guards.py): the CRD guard comes right after the orphan checks ---
    if (released := guards.crd_guard(facts, status, events)) is not None:
        return released
    # --- many teams (core/tenancy.py): credentials not permitted, cluster claimed elsewhere ---
    if (released := tenancy.deletion_gate(facts, status, events)) is not None:
        return released
    if protection_holds(facts, status):
        return _hold_protected(facts, status, events)
    _unstall_protected(status, facts)
    if facts.status_unreadable is not None:
        # Never build on an empty stand-in for records that could not be read.
        return _hold_records_lost(facts, status, events)

    match obs:
        case None:
            return _start(facts, status, events)
        case ClusterObserved(cluster=cluster):
            _unstall(status, facts)
            status.api_errors = 0
            record_cluster(status, cluster)
            record_observed_with(status, facts)
            status.observed_generation = facts.meta.generation
            if cluster.etag == _refused_etag(status):
                return _stale_read(facts, status, cluster.id, cluster.etag)
            return _send_delete(facts, status, cluster.id, cluster.etag)
        case ClusterGone(cluster_id=cluster_id, via=via, workspace=workspace):
            status.api_errors = 0
            if proves_gone(status, workspace):
                _unstall(status, facts)
                return _release_gone(status, events, cluster_id, via)
            if status.workspace_id is None and not may_have_made_a_cluster(facts, status):
                # Never observed and never created or imported by this resource: it owns
                # nothing that could be left behind.
                _unstall(status, facts)
                return _release_gone(status, events, cluster_id, via)
            return _not_found_unverified(facts, status, events, cluster_id, via, workspace)
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


# --- the start of a cycle: the phase ---------------------------------------------------------


def _held(facts: Facts, status: AkuaClusterStatus) -> bool:
    """A hold recorded in status, still waiting for a person (akua.dev/retry unchanged)."""
    deletion = status.deletion
    return (
        deletion is not None
        and deletion.hold is not None
        and deletion.hold_retry_token == facts.meta.annotations.get(ANNOTATION_RETRY)
    )


def _unknown_outcome(facts: Facts, status: AkuaClusterStatus) -> str | None:
    """Without a cluster id: which request's outcome nobody can learn by asking ("create",
    "import"), or None. A refused resend (lifecycle's outcomeUnknown) or an import whose answer
    was lost (the contract dedupes keys only for POST /clusters)."""
    lc = status.lifecycle
    if lc is None:
        return None
    if (
        lc.outcome_unknown is not None
        and lc.outcome_unknown_retry_token == facts.meta.annotations.get(ANNOTATION_RETRY)
    ):
        return lc.outcome_unknown
    if lc.create_attempt > 0 and lc.failed is None and _answered_import_lost(facts, status):
        return "import-lost"
    return None


def _answered_import_lost(facts: Facts, status: AkuaClusterStatus) -> bool:
    lc = status.lifecycle
    if lc is None:
        return False
    request = lc.create_request
    if request is not None:
        return request.provider == Provider.IMPORTED_BYOC
    return facts.spec.provider == Provider.IMPORTED_BYOC


def phase_of(facts: Facts, status: AkuaClusterStatus) -> Phase:
    """The phase a cycle starts in: the first rule that applies, in this order (no mutation)."""
    if orphan_asked(facts):
        return Phase.ORPHANED
    if guards.crd_guard_applies(facts, status):
        return Phase.CRD_GUARD
    if protection_holds(facts, status):
        return Phase.PROTECTED
    if facts.status_unreadable is not None or cluster_id_mismatch(facts, status) is not None:
        return Phase.HELD
    if _held(facts, status):
        return Phase.HELD
    deletion = status.deletion or DeletionStatus()
    cluster_id = _cluster_id(facts, status)
    if cluster_id is None and (
        _unknown_outcome(facts, status) is not None or records_lost(facts, status) is not None
    ):
        return Phase.HELD
    if deletion.retained_generation is None and _not_before(facts, deletion) > 0:
        return Phase.BACKOFF
    op = status.operation
    if op is not None and not op.done:
        return Phase.FOLLOWING
    if deletion.awaited_operation_id and not deletion.pending:
        return Phase.AWAITING
    if cluster_id is None:
        return Phase.LEARNING if unanswered_create(facts, status) is not None else Phase.NOTHING
    if deletion.pending and deletion.if_match and deletion.idempotency_key:
        return Phase.DELETING
    if deletion.retained_generation is not None:
        return Phase.RETAINED
    if op is not None and op.type == DELETE_TYPE and op.id == deletion.operation_id:
        return Phase.ENDED
    return Phase.RESOLVING


def _start(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    deletion = _deletion(status)
    outcome_still_unknown(
        facts, status
    )  # clears a refused resend's mark once akua.dev/retry changed
    if deletion.hold is not None and not _held(facts, status):
        # akua.dev/retry changed: a person looked; ask Akua again.
        events.append(
            Event(
                EventType.NORMAL,
                "DeleteRetry",
                f"akua.dev/retry changed: asking Akua again ({deletion.hold} cleared)",
            )
        )
        deletion.hold = None
        deletion.hold_retry_token = None
        deletion.vanished_operation_id = None
    phase = phase_of(facts, status)
    cluster_id = _cluster_id(facts, status)
    op = status.operation
    match phase:
        case Phase.HELD:
            return _hold_at_start(facts, status, events)
        case Phase.BACKOFF:
            wait = _not_before(facts, deletion)
            return Requeue(min(wait, facts.tuning.max_requeue), "backing off")
        case Phase.FOLLOWING:
            assert op is not None
            _deleting(status, facts, _op_message(op))
            return FollowOperation(op.id, wait=_read_lately(facts, op))
        case Phase.AWAITING:
            awaited = deletion.awaited_operation_id
            assert awaited is not None
            _deleting(status, facts, f"waiting for operation {awaited} to end before deleting")
            return FollowOperation(awaited, wait=False)
        case Phase.LEARNING:
            return _learn_create(facts, status, events)
        case Phase.NOTHING:
            events.append(
                Event(
                    EventType.NORMAL, "Released", "No Akua cluster was recorded: nothing to delete"
                )
            )
            return Release("no Akua cluster to delete", cause="nothing-to-delete")
    assert cluster_id is not None
    match phase:
        case Phase.DELETING:
            assert deletion.if_match is not None and deletion.idempotency_key is not None
            _deleting(status, facts, f"resending DELETE of attempt {deletion.attempt}")
            return DeleteCluster(cluster_id, deletion.if_match, deletion.idempotency_key)
        case Phase.RETAINED:
            return _retained(facts, status, events, cluster_id)
        case Phase.ENDED:
            # The operation of this attempt ended: (re)apply the verdict recorded with it.
            assert op is not None
            return _after_end(facts, status, events, op, cluster_id, fresh=False)
    # Phase.RESOLVING
    if deletion.attempt == 0 and status.etag:
        return _send_delete(facts, status, cluster_id, status.etag)
    if deletion.conflicts > facts.tuning.max_conflicts:
        delay = _not_before(facts, deletion)
        if delay > 0:
            return Requeue(delay, "the cluster keeps changing")
    _deleting(status, facts, "reading the cluster's current etag")
    return ObserveCluster(cluster_id)


def protection_holds(facts: Facts, status: AkuaClusterStatus) -> bool:
    """``spec.deletion.protection: true`` holds a deletion that has not sent its DELETE yet.

    A DELETE already sent (``deletion.attempt`` > 0 or one pending) goes on: protection set
    after Akua was asked to delete cannot undo that request, and the operator follows it
    (retries included). A deletion retained after a failed delete (onFailure Retain) has no
    request left in flight and waits for a person: setting protection then holds it instead of
    the spec change starting a new DELETE.
    """
    if not facts.spec.deletion.protection:
        return False
    deletion = status.deletion
    retained = (
        deletion is not None and deletion.retained_generation is not None and not deletion.pending
    )
    return retained or not guards.delete_started(status)


def _hold_protected(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    name, namespace = facts.meta.name or "NAME", facts.meta.namespace
    ns = f" -n {namespace}" if namespace else ""
    cluster_id = _cluster_id(facts, status)
    what = f"Akua cluster {cluster_id}" if cluster_id else "its Akua cluster"
    message = clip(
        f"spec.deletion.protection is true: the finalizer stays and {what} is not deleted "
        f"(no Akua call). To delete it, set the field to false: kubectl patch akuacluster "
        f'{name}{ns} --type merge -p \'{{"spec":{{"deletion":{{"protection":false}}}}}}\''
        f"; to keep the Akua cluster and release this resource, set the annotation "
        f"akua.dev/orphan=true"
    )
    _stall_once(facts, status, events, REASON_PROTECTED, message)
    return _recheck(facts, "deletion protection is on")


def _unstall_protected(status: AkuaClusterStatus, facts: Facts) -> None:
    """Protection was turned off: its Stalled condition no longer holds anything."""
    stalled = condition(status, STALLED)
    if (
        stalled is not None
        and stalled.status == ConditionStatus.TRUE
        and stalled.reason == REASON_PROTECTED
    ):
        set_condition(status, facts, STALLED, False, REASON_DELETING, "")


def _hold_at_start(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    """Phase.HELD: keep (or set) the Stalled condition that says what a person must do."""
    mismatch = cluster_id_mismatch(facts, status)
    if mismatch is not None:
        stall_mismatch(facts, status, events, mismatch)
        return _recheck(facts, "spec.clusterId differs from status.clusterId")
    deletion = _deletion(status)
    if _held(facts, status):
        return _recheck(facts, f"held: {deletion.hold}")
    unknown = _unknown_outcome(facts, status)
    if unknown == "import-lost":
        lc = status.lifecycle
        assert lc is not None
        _stall_once(facts, status, events, REASON_IMPORT_UNKNOWN, _import_lost_message(facts, lc))
        return _recheck(facts, "the outcome of an import is unknown")
    if unknown is not None:
        assert status.lifecycle is not None
        message = outcome_unknown_message(status.lifecycle, deleting=True)
        mark_stalled(status, facts, REASON_OUTCOME_UNKNOWN, message)
        return _recheck(facts, "the outcome of a resent create is unknown")
    return _hold_records_lost(facts, status, events)


def _hold_records_lost(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    why = records_lost(facts, status) or "its records are incomplete"
    message = clip(
        f"The deletion cannot tell whether this resource made an Akua cluster: {why}. The "
        f"finalizer stays and nothing is sent to Akua. If spec.clusterId can name the cluster, "
        f"set it (the deletion then deletes it); if there is no cluster to delete, or it should "
        f"be kept, set the annotation akua.dev/orphan=true to release this resource"
    )
    _stall_once(facts, status, events, REASON_RECORDS_LOST, message)
    return _recheck(facts, REASON_RECORDS_LOST)


def _import_lost_message(facts: Facts, lc: LifecycleStatus) -> str:
    request = lc.create_request
    name = request.name if request is not None else facts.spec.name
    region = request.region_id if request is not None else facts.spec.region_id
    return clip(
        f"An import (attempt {lc.create_attempt}) of a cluster named {name!r} in region "
        f"{region} was sent but its answer never recorded, so the cluster may be registered in "
        f"Akua; an import cannot be asked again safely. The finalizer stays and nothing is sent "
        f"to Akua: check Akua for that cluster; if it exists, set spec.clusterId to its id "
        f"(the deletion then deletes it); if it does not, or it should be kept, set the "
        f"annotation akua.dev/orphan=true to release this resource"
    )


def _learn_create(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    """Phase.LEARNING: a create whose answer was never recorded may have made a cluster nobody
    knows the id of. Resending it with the same key, the same body and to the same workspace
    makes Akua answer with that first operation (or start it, when the first request never
    arrived), so the deletion can follow it and delete what it made instead of releasing."""
    resend = unanswered_create(facts, status)
    assert resend is not None
    events.append(
        Event(
            EventType.NORMAL,
            "CreateUnanswered",
            "A create request was sent but its answer never recorded; asking Akua again with "
            "the same idempotency key to find the cluster to delete",
        )
    )
    _deleting(status, facts, "learning the outcome of an unanswered create")
    return resend


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
    deletion.awaited_operation_id = None
    deletion.pending = True
    deletion.if_match = etag
    deletion.idempotency_key = idempotency_key(facts.meta.uid, deletion.attempt, deletion.requests)
    deletion.requested_at = rfc3339(facts.now)
    deletion.next_attempt_at = None
    _deleting(status, facts, f"sending DELETE (attempt {deletion.attempt})")
    return DeleteCluster(cluster_id, etag, deletion.idempotency_key, budgeted=budgeted)


def _refused_etag(status: AkuaClusterStatus) -> str | None:
    """The etag Akua refused as stale (a 409 naming no running operation) for this attempt's
    last DELETE, while no newer DELETE was sent; None otherwise."""
    deletion = status.deletion
    if deletion is None or deletion.pending or deletion.operation_id is not None:
        return None
    return deletion.if_match if deletion.conflicts > 0 else None


def _stale_read(facts: Facts, status: AkuaClusterStatus, cluster_id: str, etag: str) -> Action:
    """A re-read after an etag mismatch shows the very etag Akua just refused: the read lags the
    write (the contract promises no read-your-writes). Sending it again can only get another
    409; read again after a backoff instead (counted as a conflict, so it cannot loop fast)."""
    deletion = _deletion(status)
    deletion.conflicts += 1
    delay = backoff(deletion.conflicts, facts.tuning.backoff_base, facts.tuning.backoff_cap)
    deletion.next_attempt_at = rfc3339(facts.now + timedelta(seconds=delay))
    _deleting(
        status,
        facts,
        f"Akua still shows etag {etag}, which it refused as stale (a stale read); reading "
        f"again in {delay:g}s",
    )
    return Requeue(delay, "a stale read of the cluster")


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
    if deletion.awaited_operation_id == op.id:
        deletion.awaited_operation_id = None  # recorded as status.operation from now on
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
    if facts.tuning.step_events:
        events.extend(step_events(previous, op))
    status.operation = op
    status.progress = progress(op)
    if op.type == DELETE_TYPE and not op.done:
        status.state = STATE_DELETING  # what Akua shows while it deletes (the STATE column)
    record_workspace(status, raw.workspace_id)
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
        if op.type == CREATE_TYPE and op.state == "SUCCEEDED":
            # A cluster was made, but the answer does not say which: never release on that.
            return _hold(
                facts,
                status,
                events,
                REASON_CREATE_OPERATION_NOT_FOUND,
                f"Akua create operation {op.id} succeeded but its answer names no cluster id, "
                f"so the deletion cannot find the cluster it made ({op.html_url}). The "
                f"finalizer stays: {_FIND_IT}",
            )
        events.append(Event(EventType.NORMAL, "Released", "No Akua cluster to delete"))
        return Release("no Akua cluster to delete", cause="nothing-to-delete")
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
        return Release("the delete operation succeeded", cause="succeeded")
    step = failed_step(op)
    failure = failure_text(op)
    retryable = bool(step is not None and step.retryable)
    if fresh:
        deletion.failures += 1
        deletion.last_failure = clip(failure, 500)
        if status.state == STATE_DELETING:
            status.state = None  # no longer deleting; Akua's state is read again before a retry
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
        return Release(message, cause="failed-release")
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
        return _operation_vanished(facts, status, events, action)
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
    # A 409 is a conflict whatever it names: an operation Akua still names after it ended
    # would otherwise loop (follow, DELETE, 409) without any backoff.
    deletion.conflicts += 1
    active = error.active_operation_id
    if active:
        delay = conflict_backoff(deletion.conflicts, facts.tuning)
        if delay is not None:
            deletion.next_attempt_at = rfc3339(facts.now + timedelta(seconds=delay))
            _deleting(
                status,
                facts,
                f"Akua keeps naming operation {active} as running; retrying in {delay:g}s",
            )
            return Requeue(delay, "an operation keeps running on the cluster")
        # Refused for a running operation, not for a stale etag: once it ended, the same etag
        # may well be current (etags need not change on Akua's own changes).
        deletion.if_match = None
        # Recorded before anything waits on it: a run that ends (or a restart) before the
        # operation was read goes on waiting for it instead of sending a new DELETE.
        deletion.awaited_operation_id = active
        event = waiting_event(status, active, action.cluster_id, "deleting")
        if event is not None:
            events.append(event)
        _deleting(status, facts, f"waiting for operation {active} to end before deleting")
        return FollowOperation(active, wait=False)
    status.api_errors = 0
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
    delay = conflict_backoff(deletion.conflicts, facts.tuning)
    if delay is not None:
        deletion.next_attempt_at = rfc3339(facts.now + timedelta(seconds=delay))
        _deleting(status, facts, f"the cluster keeps changing; retrying in {delay:g}s")
        return Requeue(delay, "the cluster keeps changing")
    if error.etag:
        return _send_delete(facts, status, action.cluster_id, error.etag)
    _deleting(status, facts, "re-reading the cluster after an etag mismatch")
    return ObserveCluster(action.cluster_id)


# --- releases ------------------------------------------------------------------------------


def _release_orphan(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], why: str, cause: str = "orphan"
) -> Action:
    cluster_id = _cluster_id(facts, status) or "(none)"
    events.append(
        Event(
            EventType.NORMAL,
            "Orphaned",
            f"Released without deleting Akua cluster {cluster_id}: {why}",
        )
    )
    return Release(f"orphaned: {why}", cause=cause)


def _not_found_unverified(  # noqa: PLR0917 - the parts of one ClusterGone
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    cluster_id: str,
    via: str,
    workspace: str | None,
) -> Action:
    """A 404 for the cluster that proves nothing: it was not asked in the cluster's recorded
    workspace (or none is recorded, and this resource created or imported it, or may have)."""
    if status.workspace_id is None:
        why = (
            "Akua never showed this cluster or its operations to the operator, so the workspace "
            "it lives in is not known and the 404 may come from another workspace"
        )
    else:
        sent = workspace or "(the token's own)"
        why = (
            f"the request went to workspace {sent}, not to the "
            f"cluster's workspace {status.workspace_id}"
        )
    changed = (
        ""
        if same_credentials(status, facts)
        else (
            f" The credentials changed since Akua last showed the cluster (then: "
            f"{status.credentials_identity}; now: {credentials_identity(facts)})."
        )
    )
    message = clip(
        f"Akua answered 404 for cluster {cluster_id} ({via}), but {why}: the finalizer "
        f"stays.{changed} "
        f"If the cluster is really gone (check Akua), set the annotation akua.dev/orphan=true to "
        f"release this resource; the operator asks again every "
        f"{facts.tuning.credentials_backoff:g}s"
    )
    _stall_once(facts, status, events, REASON_NOT_FOUND_UNVERIFIED, message)
    return Requeue(facts.tuning.credentials_backoff, REASON_NOT_FOUND_UNVERIFIED)


def _operation_vanished(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], action: FollowOperation
) -> Action:
    """Akua answered 404 for an operation being followed."""
    deletion = _deletion(status)
    vanished = action.operation_id
    forget_operation(status, vanished)
    if deletion.operation_id == vanished:
        deletion.operation_id = None
    if deletion.awaited_operation_id == vanished:
        deletion.awaited_operation_id = None
    status.api_errors = 0
    cluster_id = _cluster_id(facts, status)
    if cluster_id is not None:
        _deleting(status, facts, f"operation {vanished} not found; reading the cluster")
        return ObserveCluster(cluster_id)  # the cluster's own answer decides
    # No cluster id: the operation was the create. It may still make a cluster: never release.
    if not proves_gone(status, action.workspace):
        return _hold(
            facts,
            status,
            events,
            REASON_NOT_FOUND_UNVERIFIED,
            f"Akua answered 404 for create operation {vanished}, but the workspace it was made "
            f"in is not known, so asking again could look into (or create in) another "
            f"workspace. The finalizer stays: {_FIND_IT} (akua.dev/retry only when the "
            f"current credentials reach the workspace the create went to)",
        )
    resend = unanswered_create(facts, status)
    if resend is None or deletion.vanished_operation_id == vanished:
        return _hold(
            facts,
            status,
            events,
            REASON_CREATE_OPERATION_NOT_FOUND,
            f"Akua answered 404 for create operation {vanished}"
            + (" again, after the create was asked again under its key" if resend else "")
            + f", so the deletion cannot learn which cluster it made. The finalizer stays: "
            f"{_FIND_IT}",
        )
    deletion.vanished_operation_id = vanished
    events.append(
        Event(
            EventType.NORMAL,
            "CreateUnanswered",
            f"Create operation {vanished} was not found; asking Akua again with the create's "
            f"idempotency key in workspace {status.workspace_id} to find the cluster to delete",
        )
    )
    _deleting(status, facts, f"create operation {vanished} not found; asking Akua again")
    return resend


_FIND_IT = (
    "check Akua for the cluster; if it exists, set spec.clusterId to its id (the deletion then "
    "deletes it); set the annotation akua.dev/retry to a new value to ask Akua again, or "
    "akua.dev/orphan=true to release this resource without deleting anything"
)


def _hold(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], reason: str, message: str
) -> Action:
    """Hold until a person acts (recorded: later cycles make no Akua call)."""
    deletion = _deletion(status)
    deletion.hold = reason
    deletion.hold_retry_token = facts.meta.annotations.get(ANNOTATION_RETRY)
    _stall_once(facts, status, events, reason, clip(message))
    return _recheck(facts, reason)


def _stall_once(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], reason: str, message: str
) -> None:
    """Stalled=True with ``reason``; one Warning Event when it was not stalled for it yet."""
    stalled = condition(status, STALLED)
    if stalled is None or stalled.status != ConditionStatus.TRUE or stalled.reason != reason:
        events.append(Event(EventType.WARNING, reason, message))
    mark_stalled(status, facts, reason, message)


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
    return Release("the Akua cluster is already gone", cause="gone")


# --- helpers -------------------------------------------------------------------------------


def _deletion(status: AkuaClusterStatus) -> DeletionStatus:
    if status.deletion is None:
        status.deletion = DeletionStatus()
    return status.deletion


#: A run that starts this soon after the last answer about its operation (the run before ended
#: on the change that answer showed) long-polls at once instead of reading the operation first.
FRESH_READ = timedelta(seconds=10)


def _read_lately(facts: Facts, op: OperationStatus) -> bool:
    """``operation.lastReadAt`` is less than FRESH_READ old: nothing to learn from a GET that
    the next ``:wait`` would not tell (it answers at once when the operation has ended)."""
    read = parse_time(op.last_read_at) if op.last_read_at else None
    return read is not None and timedelta(0) <= facts.now - read < FRESH_READ


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
