"""The vocabulary of the decision core: facts in, a decision out.

Everything here is plain data. The handlers gather :class:`Facts` (the resource as Kubernetes
holds it) and an :data:`Observation` (the latest answer from Akua, or ``None`` at the start of a
cycle), call :func:`akua_operator.core.decide`, and carry out the :class:`Decision`: apply its
status patch, emit its events, then perform its action, which yields the next observation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from akua_operator.akua.errors import AkuaError
from akua_operator.akua.models import Cluster, Operation
from akua_operator.core.lifecycle_actions import LifecycleAction, LifecycleObservation
from akua_operator.resource.models import AkuaClusterSpec, AkuaClusterStatus

# --------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class Meta:
    """The parts of ``metadata`` the core looks at."""

    uid: str
    name: str = ""
    namespace: str = ""
    generation: int = 1
    deleting: bool = False  # metadata.deletionTimestamp is set
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Tuning:
    """Timings (seconds) and bounds; built from the operator settings."""

    observe_interval: float = 300.0
    wait_timeout: int = 5  # server-side timeout of POST /operations/{id}:wait
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    delete_retry_base: float = 10.0  # backoff between failed delete operations
    credentials_backoff: float = 60.0  # long backoff on 401/403/missing credentials
    retain_recheck: float = 15.0  # how often a Retained deletion checks for a retry trigger
    max_conflicts: int = 5  # 409s in a row before backing off
    # Longest Requeue of a deletion: kopf does not rerun a delete handler inside its delay,
    # so annotations (akua.dev/orphan, akua.dev/retry) act within this; longer backoffs are
    # recorded in status.deletion.nextAttemptAt and served by short requeues.
    max_requeue: float = 10.0
    # --on-crd-deletion delete: the CRD guard is off (core/guards.py); default orphan (False).
    delete_on_crd_deletion: bool = False
    # --step-events: one OperationStep Event per step transition (default off: the steps are
    # in status.operation and the OPERATION column; Events mark the start, the end, failures).
    step_events: bool = False


@dataclass(frozen=True)
class Facts:
    """The resource as Kubernetes holds it, plus the time."""

    meta: Meta
    spec: AkuaClusterSpec
    status: AkuaClusterStatus
    now: datetime
    tuning: Tuning = field(default_factory=Tuning)
    # Which credentials this cycle uses, without any secret (see core.status.credentials_identity);
    # None: derived from spec.credentials (Secret name/key or "operator default", workspace).
    credentials_identity: str | None = None
    # The status could not be parsed (why, without secrets); ``status`` is then empty. The
    # deletion holds (records lost) instead of reading the empty status as "nothing happened".
    status_unreadable: str | None = None
    # The AkuaCluster CRD has a deletionTimestamp (read by the runtime after this resource's
    # own deletionTimestamp): the CRD guard releases without deleting (core/guards.py).
    crd_deleting: bool = False
    # May this resource's namespace use the operator's default credentials (no Secret named)?
    # Set by the runtime from --default-credentials-namespaces / -namespace-selector
    # (core/tenancy.py); True when the resource names a Secret (the question does not arise).
    default_credentials_permitted: bool = True
    # Another resource holds the claim (a Lease) on this resource's cluster id: who, as
    # "namespace/name". None: this resource holds it, or no claim applies (core/tenancy.py).
    claimed_by: str | None = None
    # The one workspace the cycle's credentials act in without akua-context (GET /workspaces),
    # read by the runtime only when a new create or import attempt may be recorded
    # (core.lifecycle.token_workspace_needed); None: not read, or not one workspace. A new
    # attempt records it as the workspace its request goes to, so a resend after a lost answer
    # goes there too, whatever the credentials have become since.
    token_workspace: str | None = None


# Observations: what the last action found out ------------------------------------------------


@dataclass(frozen=True)
class ClusterObserved:
    cluster: Cluster
    #: For a list sweep's item (handlers/observer.py): when its page was requested (the
    #: runtime's monotonic clock). An Akua answer about the resource after that moment may be
    #: newer than the item, so the runtime reads the cluster instead. None: a direct read.
    read_at: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ClusterGone:
    """404 for the cluster, from GET /clusters/{id} or DELETE /clusters/{id}."""

    cluster_id: str
    via: str = "GET"
    # The workspace the request was sent to (akua-context): a 404 proves "gone" only when this
    # is the workspace recorded in status (core/remote.py).
    workspace: str | None = None


@dataclass(frozen=True)
class OperationObserved:
    operation: Operation
    accepted: bool = False  # True: the answer to our own DELETE (or other mutation)


@dataclass(frozen=True)
class ApiFailed:
    """An Akua call failed with a typed error (never a 404 for the cluster: see ClusterGone)."""

    error: AkuaError
    action: Action


@dataclass(frozen=True)
class CredentialsUnavailable:
    """The credentials could not be read (Secret or key missing, token file empty)."""

    message: str


@dataclass(frozen=True)
class DeleteDeferred:
    """The runtime's deletion budget refused a budgeted DeleteCluster.

    The runtime decides again from the status *before* that decision (whose patch is never
    written) with this observation: ``limit_per_minute`` is the budget, ``retry_in`` the
    seconds until its next free slot.
    """

    limit_per_minute: int
    retry_in: float


Observation = (
    ClusterObserved
    | ClusterGone
    | OperationObserved
    | ApiFailed
    | CredentialsUnavailable
    | DeleteDeferred
    | LifecycleObservation  # create/import/rename/suspend/resume: core/lifecycle_actions.py
    | None
)

# --------------------------------------------------------------------------------------------
# actions


@dataclass(frozen=True)
class ObserveCluster:
    """GET /clusters/{id}."""

    cluster_id: str
    workspace: str | None = None  # sent as akua-context (core/remote.py: target_workspace)


@dataclass(frozen=True)
class FollowOperation:
    """POST /operations/{id}:wait (wait=True, long poll) or GET /operations/{id}."""

    operation_id: str
    wait: bool = True
    workspace: str | None = None  # sent as akua-context


@dataclass(frozen=True)
class DeleteCluster:
    """DELETE /clusters/{id} with if-match and an idempotency key."""

    cluster_id: str
    if_match: str
    idempotency_key: str
    workspace: str | None = None  # sent as akua-context
    # True when this request starts a new delete attempt and the resource has no
    # akua.dev/approve-delete=true: the runtime's deletion budget (if on) must allow it.
    budgeted: bool = False


@dataclass(frozen=True)
class Release:
    """Let go of the resource: return from the delete handler so the finalizer is removed."""

    reason: str
    # Machine-readable why ("orphan", "policy-orphan", "crd-guard", "gone", "succeeded",
    # "failed-release", "nothing-to-delete"); the runtime records "crd-guard" releases.
    cause: str = ""


@dataclass(frozen=True)
class Requeue:
    """Nothing to do now; come back in ``delay`` seconds (kopf TemporaryError)."""

    delay: float
    reason: str = ""


@dataclass(frozen=True)
class Idle:
    """Done for this cycle (outside deletion); the periodic observation comes back later."""

    reason: str = ""


Action = (
    ObserveCluster
    | FollowOperation
    | DeleteCluster
    | Release
    | Requeue
    | Idle
    | LifecycleAction  # create/import/rename/suspend/resume: core/lifecycle_actions.py
)

# Actions that call Akua (the handler performs them and feeds the result back in).
API_ACTIONS = (ObserveCluster, FollowOperation, DeleteCluster)


# --------------------------------------------------------------------------------------------
# outputs


class EventType(StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


@dataclass(frozen=True)
class Event:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """What to do next.

    ``status`` is the complete new status; ``status_patch`` the JSON merge patch from the old
    one (``None`` when nothing changed, so nothing is written). Apply the patch and emit the
    events *before* performing ``action``: that is how an operation id reaches the status
    before anything waits on it.
    """

    action: Action
    status: AkuaClusterStatus
    status_patch: dict[str, Any] | None = None
    events: tuple[Event, ...] = ()
