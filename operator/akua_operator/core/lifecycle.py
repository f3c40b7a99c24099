"""The living resource (no deletionTimestamp): create, import, adopt, drift, suspend, pause.

:func:`decide_lifecycle` takes over from :func:`akua_operator.core.observe.decide_observe` for
every resource that is not being deleted (``decide`` routes here). docs/resource.md tells the
flow for users; in short:

1. ``akua.dev/paused: "true"``: no Akua call at all (an Event says so once).
2. An operation recorded in status and not done: follow it (resume after a restart).
3. A rename/suspend/resume recorded as pending: resend it unchanged (same if-match, same key).
4. No cluster id (neither ``spec.clusterId`` nor ``status.clusterId``): create
   (``managed_kaas``) or import (``imported_byoc``) with the idempotency key
   ``<uid>-create-<attempt>``. The attempt is recorded in status *before* the request, and a new
   attempt (new key) only starts after the previous one failed for good and the spec or
   ``akua.dev/retry`` changed. So a crash between the POST and the status write resends the
   same key, and Akua answers with the first operation: never a second cluster.
5. Otherwise observe the cluster and repair drift: a different Akua name is PATCHed back (with
   ``if-match``; a 409 re-reads and retries), and ``spec.suspended`` is enacted with
   ``:suspend``/``:resume`` once per generation (or ``akua.dev/retry`` value). When Akua
   resumes a suspended cluster by itself (a machine was requested), that is reported
   (``ResumedOutsideOperator``) and not undone until the spec or ``akua.dev/retry`` changes.
6. A cluster gone outside Kubernetes: ``Stalled=True`` (``ClusterNotFound``), never re-created.
"""

from __future__ import annotations

from datetime import timedelta

from akua_operator.akua.errors import AkuaConflict, AkuaError, AkuaHTTPError, AkuaNotFound
from akua_operator.akua.models import Cluster, Operation, Provider
from akua_operator.core import failures, tenancy
from akua_operator.core.lifecycle_actions import (
    LIFECYCLE_ACTIONS,
    ClusterAnswered,
    CreateCluster,
    ImportCluster,
    KubeconfigUnavailable,
    LifecycleAction,
    LifecycleFailed,
    RenameCluster,
    ResumeCluster,
    SuspendCluster,
)
from akua_operator.core.remote import (
    REASON_RECORDS_LOST,
    conflict_backoff,
    record_workspace,
    spec_workspace,
    waiting_event,
)
from akua_operator.core.remote import cluster_id_of as _cluster_id
from akua_operator.core.status import (
    READY,
    RECONCILING,
    STALLED,
    backoff,
    clip,
    condition,
    failure_text,
    mark_stalled,
    mirror_operation,
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
    Event,
    EventType,
    Facts,
    FollowOperation,
    Idle,
    Observation,
    ObserveCluster,
    OperationObserved,
    Requeue,
)
from akua_operator.resource.models import (
    ANNOTATION_PAUSED,
    ANNOTATION_RETRY,
    AkuaClusterSpec,
    AkuaClusterStatus,
    ConditionStatus,
    CreateRequestStatus,
    LifecycleStatus,
)

CREATE_TYPE = "cluster.create"
SUSPEND_TYPE = "cluster.suspend"
RESUME_TYPE = "cluster.resume"

REASON_ACTIVE = "Active"
REASON_SUSPENDED = "Suspended"
REASON_CREATING = "Creating"
REASON_IMPORTING = "Importing"
REASON_RENAMING = "Renaming"
REASON_SUSPENDING = "Suspending"
REASON_RESUMING = "Resuming"
REASON_OPERATION = "OperationRunning"
REASON_PROGRESSING = "Progressing"
REASON_NOT_FOUND = "ClusterNotFound"
REASON_PAUSED = "Paused"
REASON_RESUMED_OUTSIDE = "ResumedOutsideOperator"
REASON_SUSPENDED_OUTSIDE = "SuspendedOutsideOperator"
REASON_KUBECONFIG = "KubeconfigUnavailable"
REASON_CHANGED = "ClusterChanged"
REASON_OUTCOME_UNKNOWN = "CreateOutcomeUnknown"
REASON_MISMATCH = "ClusterIdMismatch"

FAILED_REASONS = {
    "create": "CreateFailed",
    "import": "ImportFailed",
    "suspend": "SuspendFailed",
    "resume": "ResumeFailed",
    "rename": "RenameFailed",
}

_PROGRESSING_STATES = frozenset({"pending", "provisioning", "deleting"})
BUSY_RECHECK = 10.0  # seconds between observations of a busy cluster (at most observe_interval)

# --------------------------------------------------------------------------------------------
# helpers


def create_key(uid: str, attempt: int) -> str:
    return f"{uid}-create-{attempt}"[:64]


def request_key(uid: str, kind: str, n: int) -> str:
    return f"{uid}-{kind}-{n}"[:64]


def paused(annotations: dict[str, str]) -> bool:
    return annotations.get(ANNOTATION_PAUSED, "").strip().lower() == "true"


def _lc(status: AkuaClusterStatus) -> LifecycleStatus:
    if status.lifecycle is None:
        status.lifecycle = LifecycleStatus()
    return status.lifecycle


def _token(facts: Facts) -> str | None:
    return facts.meta.annotations.get(ANNOTATION_RETRY)


def _blocked(facts: Facts, lc: LifecycleStatus) -> bool:
    """A failure is recorded and neither the spec nor akua.dev/retry changed since."""
    return (
        lc.failed is not None
        and lc.failed_generation == facts.meta.generation
        and lc.failed_retry_token == _token(facts)
    )


def _fail(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], what: str, why: str
) -> None:
    lc = _lc(status)
    lc.failed = what
    lc.failed_generation = facts.meta.generation
    lc.failed_retry_token = _token(facts)
    lc.last_failure = clip(why, 500)
    message = _failure_message(lc)
    events.append(Event(EventType.WARNING, FAILED_REASONS.get(what, "Failed"), message))
    mark_stalled(status, facts, FAILED_REASONS.get(what, "Failed"), message)


def _failure_message(lc: LifecycleStatus) -> str:
    return clip(
        f"{(lc.failed or 'operation').capitalize()} failed: {lc.last_failure}. The operator "
        f"tries again when the spec changes or the annotation akua.dev/retry gets a new value"
    )


def unanswered_create(facts: Facts, status: AkuaClusterStatus) -> CreateCluster | None:
    """For the deletion flow: the create request to resend (same key) to learn its outcome.

    A create that was (maybe) sent but whose answer never reached the status (the operator died
    or the answer was lost) may have made a cluster nobody knows the id of. Resending it with the
    same idempotency key *and the same body* makes Akua answer with that first operation (or
    start it, when the first request never arrived), so the deletion can follow it and delete
    the cluster instead of releasing and orphaning it.
    """
    lc = status.lifecycle
    spec = facts.spec
    if (
        lc is None
        or lc.create_attempt == 0
        or lc.failed is not None  # the current attempt's operation failed: nothing made
        or spec.cluster_id is not None
        or status.cluster_id is not None
    ):
        return None
    request = lc.create_request or _request_from_spec(spec)
    if request is None or request.provider != Provider.MANAGED_KAAS:
        return None
    key = create_key(facts.meta.uid, lc.create_attempt)
    return CreateCluster(
        request.name,
        request.region_id,
        request.network_profile,
        key,
        resend=True,
        workspace=_resend_workspace(status, request),
    )


def token_workspace_needed(facts: Facts) -> bool:
    """Whether this cycle may record a new create or import attempt whose workspace nothing
    names (no spec.credentials.workspaceId): the runtime then reads the token's workspace
    (``Facts.token_workspace``) so the attempt records where it goes."""
    spec = facts.spec
    status = facts.status
    if facts.meta.deleting or spec.cluster_id is not None or status.cluster_id is not None:
        return False
    if spec_workspace(facts) is not None:
        return False
    lc = status.lifecycle
    return (
        lc is None
        or lc.create_attempt == 0
        or lc.failed is not None
        or lc.outcome_unknown is not None
    )


def _resend_workspace(status: AkuaClusterStatus, request: CreateRequestStatus) -> str | None:
    """Where a resent create/import goes: where the first one went (the akua-context it was
    sent with), else the workspace Akua showed for it; the contract dedupes keys within one
    workspace only."""
    return request.workspace_id or status.workspace_id


def _request_from_spec(spec: AkuaClusterSpec) -> CreateRequestStatus | None:
    """The create/import request the spec asks for (None when the spec lacks a part)."""
    importing = spec.provider == Provider.IMPORTED_BYOC
    if not spec.name or not spec.region_id or (importing and spec.kubeconfig_secret_ref is None):
        return None
    return CreateRequestStatus(
        provider=str(spec.provider),
        name=spec.name,
        region_id=spec.region_id,
        network_profile=str(spec.network_profile) if spec.network_profile is not None else None,
        kubeconfig_secret_ref=(
            spec.kubeconfig_secret_ref.model_copy()
            if importing and spec.kubeconfig_secret_ref
            else None
        ),
    )


def _create_action(
    facts: Facts, status: AkuaClusterStatus, request: CreateRequestStatus, *, resend: bool
) -> CreateCluster | ImportCluster:
    lc = _lc(status)
    key = create_key(facts.meta.uid, lc.create_attempt)
    workspace = _resend_workspace(status, request) if resend else request.workspace_id
    if request.provider == Provider.IMPORTED_BYOC and request.kubeconfig_secret_ref is not None:
        return ImportCluster(
            request.name,
            request.region_id,
            facts.meta.namespace,
            request.kubeconfig_secret_ref,
            key,
            resend=resend,
            workspace=workspace,
        )
    return CreateCluster(
        request.name,
        request.region_id,
        request.network_profile,
        key,
        resend=resend,
        workspace=workspace,
    )


def outcome_unknown_message(lc: LifecycleStatus, *, deleting: bool) -> str:
    """What the user sees when a resent create/import was refused (Stalled, Event)."""
    what = lc.outcome_unknown or "create"
    request = lc.create_request
    named = f" named {request.name!r} in region {request.region_id}" if request is not None else ""
    if not deleting:
        retry = f"{what} it again with a new request"
    elif what == "create":
        retry = "ask Akua again with the same request"
    else:  # an import is not resent while deleting: only a person can say nothing was made
        retry = ""
    if deleting and not retry:
        next_step = "set the annotation akua.dev/orphan=true to release this resource"
        tail = ""
    else:
        next_step = f"set the annotation akua.dev/retry to a new value to {retry}"
        tail = (
            "; or set the annotation akua.dev/orphan=true to release this resource without "
            "deleting anything"
            if deleting
            else ""
        )
    return clip(
        f"Akua refused the resent {what} request of attempt {lc.create_attempt} "
        f"({lc.last_failure or 'rejected'}), so it is unknown whether the first request made a "
        f"cluster. The operator sends nothing until you act: check Akua for a cluster{named}; if "
        f"it exists, set spec.clusterId to its id (this resource then manages"
        f"{' and deletes' if deleting else ''} it); if it does not, {next_step}{tail}"
    )


def mark_outcome_unknown(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    action: CreateCluster | ImportCluster,
    error: AkuaError,
) -> None:
    """A resent create/import was refused (400/409/422): the first one may have made a cluster.

    Never a new create and never a release on this: Stalled until the user looks at Akua.
    """
    lc = _lc(status)
    lc.outcome_unknown = "import" if isinstance(action, ImportCluster) else "create"
    lc.outcome_unknown_retry_token = _token(facts)
    lc.last_failure = clip(f"{error}", 300)
    status.api_errors = 0
    message = outcome_unknown_message(lc, deleting=facts.meta.deleting)
    events.append(Event(EventType.WARNING, REASON_OUTCOME_UNKNOWN, message))
    mark_stalled(status, facts, REASON_OUTCOME_UNKNOWN, message)


def outcome_still_unknown(facts: Facts, status: AkuaClusterStatus) -> bool:
    """The outcome is unknown and akua.dev/retry did not change since (clears it otherwise)."""
    lc = status.lifecycle
    if lc is None or lc.outcome_unknown is None:
        return False
    if lc.outcome_unknown_retry_token == _token(facts):
        return True
    lc.outcome_unknown = None
    lc.outcome_unknown_retry_token = None
    return False


# --------------------------------------------------------------------------------------------
# the decision


def decide_lifecycle(
    facts: Facts, status: AkuaClusterStatus, obs: Observation, events: list[Event]
) -> Action:
    """Mutates ``status`` and ``events``; returns the next action."""
    if facts.status_unreadable is not None:
        # Never act on an empty stand-in for records that could not be read (a create now
        # could make a second cluster).
        message = clip(
            f"The status cannot be read ({facts.status_unreadable}): the operator makes no "
            f"Akua call until it can; fix or remove the unreadable status fields"
        )
        if _stalled_reason(status) != REASON_RECORDS_LOST:
            events.append(Event(EventType.WARNING, REASON_RECORDS_LOST, message))
        mark_stalled(status, facts, REASON_RECORDS_LOST, message)
        return Idle("the status cannot be read")
    lc_paused = status.lifecycle is not None and bool(status.lifecycle.paused)
    if paused(facts.meta.annotations):
        return _pause(facts, status, events, announce=not lc_paused)
    if lc_paused:
        _lc(status).paused = None
        events.append(
            Event(
                EventType.NORMAL,
                "Unpaused",
                "The annotation akua.dev/paused is no longer true: reconciling again",
            )
        )
    action = _decide(facts, status, obs, events)
    if any(c.observed_generation == facts.meta.generation for c in status.conditions):
        # A verdict (progressing, ready, stalled) was reached for this generation.
        status.observed_generation = facts.meta.generation
    return action


def _decide(
    facts: Facts, status: AkuaClusterStatus, obs: Observation, events: list[Event]
) -> Action:
    match obs:
        case None:
            # many teams (core/tenancy.py): refused before any Akua call
            if (refused := tenancy.lifecycle_gate(facts, status, events)) is not None:
                return refused
            return _start(facts, status, events)
        case ClusterObserved(cluster=cluster):
            return _on_cluster(facts, status, events, cluster)
        case ClusterAnswered(cluster=cluster, request=request):
            lc = _lc(status)
            _written(lc)
            lc.pending = None
            lc.pending_key = None
            lc.pending_if_match = None
            lc.pending_name = None
            if request == "import":
                events.append(
                    Event(
                        EventType.NORMAL,
                        "Imported",
                        f"Imported the cluster as Akua cluster {cluster.id} ({cluster.html_url})",
                    )
                )
            else:
                lc.conflicts = 0
                events.append(
                    Event(
                        EventType.NORMAL,
                        "Renamed",
                        f"Akua cluster {cluster.id} renamed to {cluster.name!r} (drift repaired)",
                    )
                )
            return _on_cluster(facts, status, events, cluster)
        case ClusterGone(cluster_id=gone):
            return _on_gone(facts, status, events, gone)
        case OperationObserved(operation=op, accepted=accepted):
            status.api_errors = 0
            return _on_operation(facts, status, events, op, accepted=accepted)
        case ApiFailed(error=error, action=action):
            return _on_api_failed(facts, status, events, error, action)
        case LifecycleFailed(error=error, action=action):
            return _on_lifecycle_failed(facts, status, events, error, action)
        case KubeconfigUnavailable(message=message):
            status.api_errors += 1
            text = clip(
                f"The kubeconfig to import cannot be read: {message}; retrying every "
                f"{facts.tuning.credentials_backoff:g}s"
            )
            fresh = _stalled_reason(status) != REASON_KUBECONFIG
            mark_stalled(status, facts, REASON_KUBECONFIG, text)
            if fresh:
                events.append(Event(EventType.WARNING, REASON_KUBECONFIG, text))
            return Requeue(facts.tuning.credentials_backoff, REASON_KUBECONFIG)
        case CredentialsUnavailable(message=message):
            outcome = failures.credentials_unavailable(status, facts, message)
            events.extend(outcome.events)
            return outcome.action
    raise AssertionError(f"unknown observation {obs!r}")  # pragma: no cover


def _stalled_reason(status: AkuaClusterStatus) -> str | None:
    cond = condition(status, STALLED)
    if cond is None or cond.status != ConditionStatus.TRUE:
        return None
    return cond.reason


# --- pause -----------------------------------------------------------------------------------


def _pause(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], *, announce: bool
) -> Action:
    _lc(status).paused = True
    message = (
        "Reconciling is paused by the annotation akua.dev/paused=true: no Akua call is made; "
        "deletion still honours the finalizer and deletion.policy"
    )
    if announce:
        events.append(Event(EventType.NORMAL, REASON_PAUSED, message))
    ready = condition(status, READY)
    ready_value = ready is not None and ready.status == ConditionStatus.TRUE
    set_condition(status, facts, READY, ready_value, REASON_PAUSED, message)
    set_condition(status, facts, RECONCILING, False, REASON_PAUSED, message)
    stalled = condition(status, STALLED)
    if stalled is None:
        set_condition(status, facts, STALLED, False, REASON_PAUSED, "")
    return Idle("paused")


# --- the start of a cycle ---------------------------------------------------------------------


def cluster_id_mismatch(facts: Facts, status: AkuaClusterStatus) -> str | None:
    """Why spec.clusterId cannot be used: it names another cluster than the one this resource
    created or recorded (the CRD rejects that; an older CRD may not have). None when fine."""
    want, have = facts.spec.cluster_id, status.cluster_id
    if want is None or have is None or want == have:
        return None
    return (
        f"spec.clusterId {want} differs from Akua cluster {have} that this resource already "
        f"created or manages (status.clusterId). The operator acts on neither: create a new "
        f"AkuaCluster to adopt {want}"
        + (
            f"; set akua.dev/orphan=true to release this resource without deleting {have}"
            if facts.meta.deleting
            else ""
        )
    )


def stall_mismatch(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], message: str
) -> None:
    if _stalled_reason(status) != REASON_MISMATCH:
        events.append(Event(EventType.WARNING, REASON_MISMATCH, message))
    mark_stalled(status, facts, REASON_MISMATCH, message)


def _start(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    lc = _lc(status)
    mismatch = cluster_id_mismatch(facts, status)
    if mismatch is not None:
        stall_mismatch(facts, status, events, mismatch)
        return Idle(mismatch)
    op = status.operation
    if op is not None and not op.done:
        return FollowOperation(op.id, wait=False)
    cluster_id = _cluster_id(facts, status)
    if cluster_id is not None and lc.pending and lc.pending_key and lc.pending_if_match:
        return _resend(facts, status, cluster_id)
    if cluster_id is not None:
        if lc.conflicts > facts.tuning.max_conflicts:
            lc.conflicts = 0  # the backoff was served by the requeue that brought us here
        return ObserveCluster(cluster_id)
    return _create_or_import(facts, status, events)


def _resend(facts: Facts, status: AkuaClusterStatus, cluster_id: str) -> Action:
    lc = _lc(status)
    assert lc.pending_key is not None and lc.pending_if_match is not None
    _progressing(status, facts, _PENDING_REASONS.get(lc.pending or "", REASON_PROGRESSING), "")
    if lc.pending == "suspend":
        return SuspendCluster(cluster_id, lc.pending_if_match, lc.pending_key)
    if lc.pending == "resume":
        return ResumeCluster(cluster_id, lc.pending_if_match, lc.pending_key)
    if lc.pending == "rename" and lc.pending_name:
        # Exactly the name first sent under this key (the spec may have changed since).
        return RenameCluster(cluster_id, lc.pending_name, lc.pending_if_match, lc.pending_key)
    lc.pending = None  # nothing to resend exactly (a status from before pendingName): re-read
    lc.pending_key = None
    lc.pending_if_match = None
    return ObserveCluster(cluster_id)


_PENDING_REASONS = {
    "suspend": REASON_SUSPENDING,
    "resume": REASON_RESUMING,
    "rename": REASON_RENAMING,
}


def _create_or_import(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Action:
    lc = _lc(status)
    spec = facts.spec
    if lc.outcome_unknown is not None:
        unknown = lc.outcome_unknown
        if outcome_still_unknown(facts, status):
            mark_stalled(status, facts, REASON_OUTCOME_UNKNOWN,
                         outcome_unknown_message(lc, deleting=False))  # fmt: skip
            return Idle(f"the outcome of the resent {unknown} is unknown")
        # akua.dev/retry changed: the user checked Akua; a new attempt with a new key.
        lc.failed = unknown
        lc.failed_generation = None
        lc.failed_retry_token = None
    recorded = lc.create_request
    importing = (
        recorded.provider == Provider.IMPORTED_BYOC
        if recorded is not None and lc.failed is None
        else spec.provider == Provider.IMPORTED_BYOC
    )
    what = "import" if importing else "create"
    if _blocked(facts, lc):
        mark_stalled(status, facts, FAILED_REASONS.get(lc.failed or what, "Failed"),
                     _failure_message(lc))  # fmt: skip
        return Idle(f"{what} failed; waiting for a spec change or akua.dev/retry")
    new_attempt = lc.failed is not None or lc.create_attempt == 0
    request = recorded if recorded is not None and not new_attempt else _request_from_spec(spec)
    if request is None:
        # The CRD's rules reject this; an old CRD may not have: say what is missing.
        missing = "kubeconfigSecretRef" if spec.name and spec.region_id else "name and regionId"
        message = f"Cannot {what} a cluster: spec.{missing} is required (or set spec.clusterId)"
        mark_stalled(status, facts, "InvalidSpec", message)
        return Idle(message)
    if new_attempt:
        # A new attempt goes where the spec says now (else the token's own workspace, named,
        # so that a resend never lands in another one after a rotation); nothing made so far
        # pins a workspace.
        workspace = spec_workspace(facts) or facts.token_workspace
        request = request.model_copy(update={"workspace_id": workspace})
        if status.cluster_id is None:
            status.workspace_id = None
    lc.create_request = request
    if new_attempt:
        lc.create_attempt += 1
        lc.failed = None
        lc.failed_generation = None
        lc.failed_retry_token = None
        verb = "Importing" if importing else "Creating"
        events.append(
            Event(
                EventType.NORMAL,
                verb,
                f"{verb} Akua cluster {request.name!r} in region {request.region_id} "
                f"(attempt {lc.create_attempt})",
            )
        )
    status.observed_generation = facts.meta.generation
    reason = REASON_IMPORTING if importing else REASON_CREATING
    _progressing(status, facts, reason, f"{what} requested (attempt {lc.create_attempt})")
    return _create_action(facts, status, request, resend=not new_attempt)


# --- the cluster as observed ------------------------------------------------------------------


def _on_cluster(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], cluster: Cluster
) -> Action:
    lc = _lc(status)
    status.api_errors = 0
    if (stale := _stale_read(facts, lc, cluster)) is not None:
        return stale
    first = status.cluster_id is None or status.etag is None
    record_cluster(status, cluster)
    record_observed_with(status, facts)
    status.observed_generation = facts.meta.generation
    if first:
        events.append(
            Event(
                EventType.NORMAL,
                "Observed",
                f"Managing Akua cluster {cluster.id} ({cluster.state}, {cluster.html_url})",
            )
        )
    state = str(cluster.state)
    busy = cluster.reconciling or state in _PROGRESSING_STATES
    if _blocked(facts, lc):
        mark_stalled(status, facts, FAILED_REASONS.get(lc.failed or "", "Failed"),
                     _failure_message(lc))  # fmt: skip
        return Idle("failed; waiting for a spec change or akua.dev/retry")
    if lc.failed is not None:  # the spec or akua.dev/retry changed: try again
        lc.failed = None
        lc.failed_generation = None
        lc.failed_retry_token = None
    if busy:
        # Something runs on the cluster (e.g. started outside Kubernetes): come back until it
        # settles, then enact the spec (the periodic observation alone would be too slow).
        _report(facts, status)
        return Requeue(min(facts.tuning.observe_interval, BUSY_RECHECK), "the cluster is busy")
    want = facts.spec.name
    if want and cluster.name != want:
        return _request(facts, status, events, "rename", cluster)
    desired = facts.spec.suspended
    if state in ("active", "suspended") and (state == "suspended") != desired:
        enacted = (
            lc.enacted_generation == facts.meta.generation
            and lc.enacted_retry_token == _token(facts)
            and lc.enacted_suspended == desired
        )
        if not enacted:
            lc.drift = None
            return _request(facts, status, events, "suspend" if desired else "resume", cluster)
        reason = REASON_RESUMED_OUTSIDE if desired else REASON_SUSPENDED_OUTSIDE
        if lc.drift != reason:
            lc.drift = reason
            events.append(Event(EventType.WARNING, reason, _drift_message(status, reason)))
    elif state in ("active", "suspended"):
        lc.enacted_generation = facts.meta.generation
        lc.enacted_retry_token = _token(facts)
        lc.enacted_suspended = desired
        lc.drift = None
    _report(facts, status)
    return Idle("observed")


def _written(lc: LifecycleStatus) -> None:
    """Akua accepted the pending rename/suspend/resume: remember the etag it was sent with."""
    if lc.pending is not None and lc.pending_if_match is not None:
        lc.stale_etag = lc.pending_if_match
        lc.stale_reads = 0


def _stale_read(facts: Facts, lc: LifecycleStatus, cluster: Cluster) -> Action | None:
    """A read that still shows the etag of a write Akua accepted, or one it just refused as
    stale, lags: the contract promises no read-your-writes, and acting on it would repeat the
    write (or report drift that is not there) only to get a 409. Read again after a backoff;
    after ``max_conflicts`` such reads in a row the read is taken as it is (so an Akua that
    keeps the etag cannot stop the lifecycle)."""
    if lc.stale_etag is None:
        return None
    if cluster.etag != lc.stale_etag or lc.stale_reads >= facts.tuning.max_conflicts:
        lc.stale_etag = None
        lc.stale_reads = 0
        return None
    lc.stale_reads += 1
    delay = backoff(lc.stale_reads, facts.tuning.backoff_base, facts.tuning.backoff_cap)
    return Requeue(delay, f"a stale read of the cluster (etag {cluster.etag}, before our write)")


def _drift_message(status: AkuaClusterStatus, reason: str) -> str:
    if reason == REASON_RESUMED_OUTSIDE:
        return (
            f"Akua cluster {status.cluster_id} is active although spec.suspended is true: Akua "
            f"resumed it (a machine was requested) or someone did outside Kubernetes. The "
            f"operator does not suspend it again until the spec changes or the annotation "
            f"akua.dev/retry gets a new value"
        )
    return (
        f"Akua cluster {status.cluster_id} was suspended outside Kubernetes although "
        f"spec.suspended is false. The operator does not resume it until the spec changes or "
        f"the annotation akua.dev/retry gets a new value"
    )


def _request(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], kind: str, cluster: Cluster
) -> Action:
    lc = _lc(status)
    lc.requests += 1
    lc.pending = kind
    lc.pending_if_match = cluster.etag
    lc.pending_key = request_key(facts.meta.uid, kind, lc.requests)
    lc.pending_name = facts.spec.name if kind == "rename" else None
    reason = _PENDING_REASONS[kind]
    if kind == "rename":
        assert facts.spec.name is not None
        events.append(
            Event(
                EventType.NORMAL,
                "NameDrift",
                f"Akua cluster {cluster.id} is named {cluster.name!r}, the spec says "
                f"{facts.spec.name!r}: renaming it",
            )
        )
        _progressing(status, facts, reason, f"renaming to {facts.spec.name!r}")
        return RenameCluster(cluster.id, facts.spec.name, cluster.etag, lc.pending_key)
    _progressing(status, facts, reason, f"requesting {kind}")
    if kind == "suspend":
        return SuspendCluster(cluster.id, cluster.etag, lc.pending_key)
    return ResumeCluster(cluster.id, cluster.etag, lc.pending_key)


def _on_gone(facts: Facts, status: AkuaClusterStatus, events: list[Event], gone: str) -> Action:
    status.api_errors = 0
    status.state = None
    status.reconciling = None
    lc = _lc(status)
    lc.pending = None
    lc.pending_name = None
    message = (
        f"Akua cluster {gone} does not exist (404); it was deleted outside Kubernetes or the "
        f"credentials see another workspace. Nothing is re-created: delete this resource (the "
        f"deletion finds nothing to delete) or set spec.clusterId on a new one"
    )
    fresh = _stalled_reason(status) != REASON_NOT_FOUND
    mark_stalled(status, facts, REASON_NOT_FOUND, message)
    if fresh:
        events.append(Event(EventType.WARNING, REASON_NOT_FOUND, message))
    return Idle(message)


# --- operations -------------------------------------------------------------------------------


def _on_operation(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    raw: Operation,
    *,
    accepted: bool,
) -> Action:
    lc = _lc(status)
    op = mirror_operation(raw)
    previous = status.operation
    kind = short_type(op.type)
    if accepted:
        _written(lc)
        lc.pending = None
        lc.pending_key = None
        lc.pending_if_match = None
        lc.pending_name = None
        lc.conflicts = 0
    if previous is None or previous.id != op.id:
        verb = "started" if accepted else "attached to"
        events.append(
            Event(
                EventType.NORMAL,
                f"{kind.capitalize()}Started",
                f"Akua {kind} operation {op.id} {verb} ({op.html_url or 'no url'})",
            )
        )
    if facts.tuning.step_events:
        events.extend(step_events(previous, op))
    status.operation = op
    status.progress = progress(op)
    record_workspace(status, raw.workspace_id)
    if not op.done:
        _report(facts, status)
        return FollowOperation(op.id, wait=True)
    ended_now = previous is None or previous.id != op.id or not previous.done
    cluster_id = _cluster_id(facts, status)
    if op.type == CREATE_TYPE and op.state == "SUCCEEDED":
        created = raw.created_cluster_id or (raw.owner_id if raw.owner_type == "cluster" else None)
        if created and status.cluster_id is None:
            status.cluster_id = created
            cluster_id = created
            record_observed_with(status, facts)
    if op.state == "SUCCEEDED":
        if ended_now:
            events.append(
                Event(
                    EventType.NORMAL,
                    _DONE_REASONS.get(op.type, f"{kind.capitalize()}Succeeded"),
                    f"Akua {kind} operation {op.id} succeeded"
                    + (f": cluster {cluster_id}" if cluster_id else "")
                    + f" ({op.html_url or 'no url'})",
                )
            )
    elif ended_now and op.type in (CREATE_TYPE, SUSPEND_TYPE, RESUME_TYPE):
        _fail(
            facts,
            status,
            events,
            kind,
            f"operation {op.id} {failure_text(op)} ({op.html_url or 'no url'})",
        )
    elif ended_now:
        events.append(
            Event(
                EventType.WARNING,
                "OperationEnded",
                f"Akua {kind} operation {op.id} ended {op.state} ({op.html_url or 'no url'})",
            )
        )
    if cluster_id is None:
        if not _blocked(facts, lc):
            _report(facts, status)
        return Idle("operation ended without a cluster")
    return ObserveCluster(cluster_id)


_DONE_REASONS = {
    CREATE_TYPE: "Created",
    SUSPEND_TYPE: "Suspended",
    RESUME_TYPE: "Resumed",
}


# --- failures ---------------------------------------------------------------------------------


def _on_api_failed(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    error: AkuaError,
    action: Action,
) -> Action:
    if isinstance(action, LIFECYCLE_ACTIONS):
        return _on_lifecycle_failed(facts, status, events, error, action)
    cluster_id = _cluster_id(facts, status)
    if isinstance(action, FollowOperation) and isinstance(error, AkuaNotFound):
        if status.operation is not None and status.operation.id == action.operation_id:
            status.operation = None
            status.progress = None
        status.api_errors = 0
        if cluster_id is None:
            # A create whose operation vanished: the next cycle resends the same key.
            return Requeue(facts.tuning.backoff_base, "the create operation vanished")
        return ObserveCluster(cluster_id)
    unavailable = failures.wait_unavailable(status, facts, error, action)
    if unavailable is not None:
        return unavailable
    doing = f"observing Akua cluster {cluster_id}" if cluster_id else "following an operation"
    outcome = failures.api_failure(status, facts, error, doing)
    events.extend(outcome.events)
    return outcome.action


def _on_lifecycle_failed(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    error: AkuaError,
    action: LifecycleAction,
) -> Action:
    lc = _lc(status)
    match action:
        case CreateCluster() | ImportCluster():
            what = "import" if isinstance(action, ImportCluster) else "create"
            if isinstance(error, AkuaHTTPError) and error.status in (400, 409, 422):
                if action.resend:
                    # Maybe not the first time Akua saw this key: the first request may have
                    # made a cluster. Never a new create on this.
                    mark_outcome_unknown(facts, status, events, action, error)
                    return Idle(f"the outcome of the resent {what} is unknown")
                status.api_errors = 0
                _fail(facts, status, events, what, f"Akua rejected the {what}: {error}")
                return Idle(f"{what} rejected")
            outcome = failures.api_failure(status, facts, error, f"requesting the {what}")
            events.extend(outcome.events)
            return outcome.action
        case (
            RenameCluster(cluster_id=cid)
            | SuspendCluster(cluster_id=cid)
            | ResumeCluster(cluster_id=cid)
        ):
            kind = lc.pending or "request"
            if isinstance(error, AkuaNotFound):
                return _on_gone(facts, status, events, cid)
            if isinstance(error, AkuaConflict):
                return _on_conflict(facts, status, events, error, cid, kind=kind)
            if isinstance(error, AkuaHTTPError) and error.status in (400, 422):
                lc.pending = None  # answered for good; the next try re-reads the cluster
                lc.pending_key = None
                lc.pending_if_match = None
                lc.pending_name = None
            outcome = failures.api_failure(status, facts, error, f"requesting {kind} of {cid}")
            events.extend(outcome.events)
            return outcome.action
    raise AssertionError(f"unknown action {action!r}")  # pragma: no cover


def _on_conflict(
    facts: Facts,
    status: AkuaClusterStatus,
    events: list[Event],
    error: AkuaConflict,
    cluster_id: str,
    *,
    kind: str,
) -> Action:
    lc = _lc(status)
    if not error.active_operation_id and lc.pending_if_match is not None:
        # Refused as stale: a re-read that still shows it lags (see _stale_read).
        lc.stale_etag = lc.pending_if_match
        lc.stale_reads = 0
    lc.pending = None  # answered: never resend a stale etag
    lc.pending_key = None
    lc.pending_if_match = None
    lc.pending_name = None
    # A 409 is a conflict whatever it names (an operation Akua still names after it ended
    # would loop otherwise): counted, backed off after max_conflicts, told once per operation.
    lc.conflicts += 1
    active = error.active_operation_id
    if active and conflict_backoff(lc.conflicts, facts.tuning) is None:
        event = waiting_event(status, active, cluster_id, f"the {kind}")
        if event is not None:
            events.append(event)
        return FollowOperation(active, wait=False)
    if not active:
        status.api_errors = 0
    if error.etag and not active:
        status.etag = error.etag
    if not active:
        events.append(
            Event(
                EventType.NORMAL,
                REASON_CHANGED,
                f"Akua cluster {cluster_id} changed since it was last observed (etag mismatch); "
                f"re-reading it and retrying the {kind}",
            )
        )
    delay = conflict_backoff(lc.conflicts, facts.tuning)
    if delay is not None:
        _progressing(
            status,
            facts,
            _PENDING_REASONS.get(kind, REASON_PROGRESSING),
            f"the cluster keeps changing; retrying the {kind} in {delay:g}s "
            f"(until {rfc3339(facts.now + timedelta(seconds=delay))})",
        )
        return Requeue(delay, "the cluster keeps changing")
    return ObserveCluster(cluster_id)


# --- conditions -------------------------------------------------------------------------------


def _progressing(status: AkuaClusterStatus, facts: Facts, reason: str, message: str) -> None:
    op = status.operation
    if op is not None and not op.done:
        message = f"{progress(op)} (operation {op.id})"
    set_kstatus(
        status,
        facts,
        ready=(False, reason, message),
        reconciling=(True, reason, message),
        stalled=(False, reason, ""),
    )


def _report(facts: Facts, status: AkuaClusterStatus) -> None:
    """kstatus conditions from the observed cluster, the followed operation and the drift."""
    lc = _lc(status)
    op = status.operation
    if op is not None and not op.done:
        message = f"{progress(op)} (operation {op.id})"
        if op.last_error is not None:
            message += f"; last error: {op.last_error.message}"
        reason = {
            CREATE_TYPE: REASON_CREATING,
            SUSPEND_TYPE: REASON_SUSPENDING,
            RESUME_TYPE: REASON_RESUMING,
        }.get(op.type, REASON_OPERATION)
        set_kstatus(
            status,
            facts,
            ready=(False, reason, clip(message)),
            reconciling=(True, reason, clip(message)),
            stalled=(False, reason, ""),
        )
        return
    state = status.state or "unknown"
    if status.reconciling or state in _PROGRESSING_STATES:
        message = f"Akua cluster is {state}" + (
            ", an operation is in flight" if status.reconciling else ""
        )
        set_kstatus(
            status,
            facts,
            ready=(False, REASON_PROGRESSING, message),
            reconciling=(True, REASON_PROGRESSING, message),
            stalled=(False, REASON_PROGRESSING, ""),
        )
        return
    if lc.drift is not None:
        message = _drift_message(status, lc.drift)
        set_kstatus(
            status,
            facts,
            ready=(True, lc.drift, message),
            reconciling=(False, lc.drift, ""),
            stalled=(False, lc.drift, ""),
        )
        return
    wanted = "suspended" if facts.spec.suspended else "active"
    if state == wanted:
        message = f"Akua cluster {status.cluster_id} is {state}"
        reason = REASON_ACTIVE if state == "active" else REASON_SUSPENDED
        set_kstatus(
            status,
            facts,
            ready=(True, reason, message),
            reconciling=(False, reason, ""),
            stalled=(False, reason, ""),
        )
        return
    message = f"Akua cluster is {state}, the spec wants {wanted}"
    set_kstatus(
        status,
        facts,
        ready=(False, "StateDiffers", message),
        reconciling=(True, "StateDiffers", message),
        stalled=(False, "StateDiffers", ""),
    )
