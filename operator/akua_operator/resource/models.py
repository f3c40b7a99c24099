"""The ``AkuaCluster`` resource: spec and status as pydantic models.

These models are the single source of truth for the CRD schema (see :mod:`.crd`). Every status
field the operator writes is declared here, because the API server prunes undeclared fields.

Field names are Python snake_case; the Kubernetes (JSON) names are camelCase aliases. Always
dump with ``by_alias=True``; both names are accepted on input.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from akua_operator.akua.models import NetworkProfile, Provider

GROUP = "akua.dev"
VERSION = "v1alpha1"
KIND = "AkuaCluster"
PLURAL = "akuaclusters"
SINGULAR = "akuacluster"
SHORT_NAMES = ["akc"]
CRD_NAME = f"{PLURAL}.{GROUP}"
API_VERSION = f"{GROUP}/{VERSION}"

FINALIZER = "akua.dev/finalizer"
ANNOTATION_ORPHAN = "akua.dev/orphan"
ANNOTATION_RETRY = "akua.dev/retry"
ANNOTATION_PAUSED = "akua.dev/paused"
#: Prefix of kopf's own annotations on AkuaClusters (progress and the last handled spec).
KOPF_STORAGE_PREFIX = "operator.akua.dev"
#: kopf writes this once a create/update/resume handler finished: the resource was handled, so
#: its status must hold the records of what was done (core/remote.py: records_lost).
ANNOTATION_LAST_HANDLED = f"{KOPF_STORAGE_PREFIX}/last-handled-configuration"
#: "true": this resource's DELETE may start beyond the operator's deletion budget.
ANNOTATION_APPROVE_DELETE = "akua.dev/approve-delete"
DEFAULT_SECRET_KEY = "token"  # noqa: S105 - the name of a Secret key, not a secret


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        use_enum_values=False,
    )

    def dump(self) -> dict[str, Any]:
        """The Kubernetes JSON form: camelCase, no ``None`` values."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --------------------------------------------------------------------------------------------
# spec


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class OnFailure(StrEnum):
    RELEASE = "Release"
    RETAIN = "Retain"


# Provider and NetworkProfile are the Akua contract's own enums: one definition, in the models
# of the Akua API, so the CRD's enums cannot drift from what the client sends.


class SecretKeyRef(_Model):
    """A key in a Secret in the resource's own namespace."""

    name: str = Field(
        min_length=1, max_length=253, description="Name of the Secret (same namespace)."
    )
    key: str = Field(
        default=DEFAULT_SECRET_KEY,
        min_length=1,
        max_length=253,
        description="Key in the Secret's data.",
    )


class CredentialsSpec(_Model):
    """Which Akua credentials to use for this cluster."""

    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description=(
            "Secret holding the Akua API token. Read on every attempt, so a corrected Secret is "
            "picked up without a restart. Default: the operator's own token "
            "(AKUA_TOKEN / AKUA_TOKEN_FILE)."
        ),
    )
    workspace_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=53,
        description="Akua workspace (ws_...), sent as the akua-context header when set.",
    )


class DeletionSpec(_Model):
    """What happens to the Akua cluster when this resource is deleted."""

    policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        description=(
            "Delete: delete the Akua cluster, release the finalizer when the operation ended. "
            "Orphan: release at once, leave the Akua cluster untouched (no API call)."
        ),
    )
    on_failure: OnFailure = Field(
        default=OnFailure.RELEASE,
        description=(
            "When the delete operation failed for good (retries exhausted or not retryable): "
            "Release records the error and releases the finalizer; Retain keeps the finalizer, "
            "sets Stalled=True, and tries again when the spec changes or the annotation "
            "akua.dev/retry gets a new value."
        ),
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=100,
        description="How many new DELETE attempts after a failed, retryable delete operation.",
    )
    protection: bool = Field(
        default=False,
        description=(
            "true: a DELETE of this resource is refused by the API server (the chart's "
            "ValidatingAdmissionPolicy) and, without that policy, the operator holds the "
            "finalizer without deleting the Akua cluster (Stalled DeletionProtected). Set it to "
            "false to allow the deletion."
        ),
    )


class AkuaClusterSpec(_Model):
    """Desired state of an Akua cluster."""

    cluster_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=54,
        description=(
            "The Akua cluster this resource manages (clu_...). Set it to adopt an existing "
            "cluster. Immutable once set."
        ),
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Akua display name. Required unless adopting (clusterId set).",
    )
    region_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=54,
        description="Akua region. Required when creating or importing.",
    )
    network_profile: NetworkProfile | None = Field(
        default=None,
        description="Networking profile of a managed cluster (immutable in Akua).",
    )
    provider: Provider = Field(
        default=Provider.MANAGED_KAAS,
        description="managed_kaas creates a managed cluster; imported_byoc imports one.",
    )
    kubeconfig_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Kubeconfig of the cluster to import (provider imported_byoc).",
    )
    suspended: bool = Field(default=False, description="Suspend (true) or resume (false).")
    credentials: CredentialsSpec | None = Field(
        default=None, description="Akua credentials. Default: the operator's own."
    )
    deletion: DeletionSpec = Field(default_factory=DeletionSpec, description="Deletion behaviour.")


# CEL rules on the spec object. ``oldSelf`` rules are transition rules (checked on update).
SPEC_VALIDATIONS: list[dict[str, str]] = [
    {
        "rule": (
            "!has(oldSelf.clusterId) || "
            "(has(self.clusterId) && self.clusterId == oldSelf.clusterId)"
        ),
        "message": "clusterId is immutable once set",
    },
    {
        "rule": "has(self.clusterId) || has(self.name)",
        "message": "name is required unless adopting an existing cluster (clusterId)",
    },
    {
        "rule": "has(self.clusterId) || has(self.regionId)",
        "message": "regionId is required when creating or importing a cluster",
    },
    {
        "rule": (
            "has(self.clusterId) || !has(self.provider) || self.provider != 'imported_byoc' "
            "|| has(self.kubeconfigSecretRef)"
        ),
        "message": "kubeconfigSecretRef is required to import a cluster (provider imported_byoc)",
    },
]


# CEL rules on the whole object (transition rules: checked on updates, not on create).
# Setting spec.clusterId later is adopting; it must not switch away from a cluster the operator
# already created or recorded (status.clusterId), which would orphan that one.
ROOT_VALIDATIONS: list[dict[str, str]] = [
    {
        "rule": (
            "(has(oldSelf.spec) && has(oldSelf.spec.clusterId)) || !has(self.spec) || "
            "!has(self.spec.clusterId) || !has(self.status) || !has(self.status.clusterId) || "
            "self.spec.clusterId == self.status.clusterId"
        ),
        "message": (
            "spec.clusterId must be the Akua cluster this resource already manages "
            "(status.clusterId); create a new AkuaCluster to adopt another cluster"
        ),
        "messageExpression": (
            "'spec.clusterId ' + self.spec.clusterId + ' differs from the Akua cluster this "
            "resource already created or manages (status.clusterId ' + self.status.clusterId + "
            "'); create a new AkuaCluster to adopt another cluster'"
        ),
    },
]


# --------------------------------------------------------------------------------------------
# status


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """A kstatus condition (Ready, Reconciling, Stalled)."""

    type: str = Field(description="Ready, Reconciling or Stalled.")
    status: ConditionStatus
    reason: str = Field(description="CamelCase machine-readable reason.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When status last changed.",
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this condition was computed for."
    )


class OperationStepStatus(_Model):
    """One step of an Akua operation, mirrored as Akua reports it."""

    name: str
    status: str = Field(description="pending, running, completed, failed or skipped.")
    execution_type: str | None = Field(
        default=None, description="system, user, approval or skipped."
    )
    started_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    completed_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    error_message: str | None = None
    retryable: bool | None = None
    skippable: bool | None = None


class OperationErrorStatus(_Model):
    message: str


class OperationLastErrorStatus(_Model):
    message: str
    step_name: str | None = None


class OperationStatus(_Model):
    """Mirror of the Akua operation the operator is following (or followed last)."""

    id: str = Field(description="Akua operation id (op_...).")
    type: str = Field(description="cluster.create, cluster.delete, cluster.suspend, ...")
    state: str = Field(description="RUNNING, SUCCEEDED, FAILED or CANCELLED.")
    done: bool
    html_url: str | None = Field(default=None, description="The operation in the Akua dashboard.")
    started_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    completed_at: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    error: OperationErrorStatus | None = None
    last_error: OperationLastErrorStatus | None = None
    steps: list[OperationStepStatus] = Field(
        default_factory=list,
        description="The steps in Akua's order: every step, or at most 50 around the current "
        "(or failed) one when the operation has more (see stepsOffset, stepsOmitted).",
    )
    steps_offset: int | None = Field(
        default=None,
        description="When steps were omitted: the position (0-based) in Akua's list of the "
        "first step mirrored.",
    )
    steps_omitted: int | None = Field(
        default=None, description="How many of the operation's steps are not mirrored."
    )
    last_read_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When Akua last answered about this operation (refreshed when it changes, "
        "and at most every 30 s while it does not).",
    )


class DeletionStatus(_Model):
    """Bookkeeping of the deletion, so a restarted operator resumes instead of repeating."""

    attempt: int = Field(
        default=0, description="Current delete attempt (1 = first DELETE operation)."
    )
    requests: int = Field(
        default=0,
        description="Distinct DELETE requests sent so far (part of the idempotency key).",
    )
    pending: bool = Field(
        default=False,
        description="A DELETE was (maybe) sent and its answer is not recorded yet; resend it "
        "as is (same if-match, same idempotency key).",
    )
    if_match: str | None = Field(default=None, description="The etag of the pending DELETE.")
    idempotency_key: str | None = Field(
        default=None, description="The idempotency key of the pending/last DELETE."
    )
    requested_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the pending/last DELETE was decided: a delete operation that started "
        "well before it was already running (DeleteAttached, not DeleteStarted).",
    )
    operation_id: str | None = Field(
        default=None, description="The delete operation of the current attempt."
    )
    awaited_operation_id: str | None = Field(
        default=None,
        description="A running operation Akua named when it refused this attempt's DELETE "
        "(409): followed until it ends (then the delete goes on), also after a restart, "
        "instead of a new DELETE.",
    )
    conflicts: int = Field(default=0, description="409s in a row in this attempt.")
    failures: int = Field(default=0, description="Failed delete operations so far.")
    next_attempt_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="Backoff: no new DELETE before this time.",
    )
    retained_generation: int | None = Field(
        default=None,
        description="onFailure Retain: the generation when retained; a new one retries.",
    )
    retained_retry_token: str | None = Field(
        default=None,
        description="onFailure Retain: the akua.dev/retry value when retained; a new one retries.",
    )
    last_failure: str | None = Field(default=None, description="Why the last attempt failed.")
    hold: str | None = Field(
        default=None,
        description="Why the deletion holds until a person acts (a reason, e.g. "
        "CreateOperationNotFound); akua.dev/orphan releases, a new akua.dev/retry value asks "
        "Akua again.",
    )
    hold_retry_token: str | None = Field(
        default=None, description="The akua.dev/retry value when the hold began."
    )
    vanished_operation_id: str | None = Field(
        default=None,
        description="A create operation Akua answered 404 for; the create was resent once "
        "under its key to learn it again.",
    )
    shard: str | None = Field(
        default=None,
        description="The operator shard that started this deletion (default: the default "
        "shard) and alone finishes it: a relabel (akua.dev/shard) during a deletion is "
        "ignored. Recorded before any Akua call, only when the operator runs in shards.",
    )
    released_at: str | None = Field(
        default=None,
        json_schema_extra={"format": "date-time"},
        description="When the operator released the finalizer (written with the final status, "
        "just before the finalizer is removed).",
    )


class CreateRequestStatus(_Model):
    """The body of the current create/import attempt as it was (first) sent.

    A resend of the attempt repeats exactly this body under the attempt's idempotency key: Akua
    answers a reused key with a different body with 422. For an import only the reference to
    the kubeconfig Secret is recorded, never the kubeconfig.
    """

    provider: str = Field(description="managed_kaas (POST /clusters) or imported_byoc (import).")
    name: str = Field(description="The name sent.")
    region_id: str = Field(description="The region sent.")
    network_profile: str | None = Field(default=None, description="The network profile sent.")
    kubeconfig_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Import: the Secret the kubeconfig is read from."
    )
    workspace_id: str | None = Field(
        default=None,
        description="The workspace sent as akua-context (none: the token's own); a resend goes "
        "to the same one.",
    )


class LifecycleStatus(_Model):
    """Bookkeeping of create, import, rename, suspend and resume, so a restart resumes."""

    create_attempt: int = Field(
        default=0,
        description="Create/import attempt (part of the idempotency key <uid>-create-<n>); a "
        "new attempt starts only after the previous one failed and the spec or akua.dev/retry "
        "changed.",
    )
    create_request: CreateRequestStatus | None = Field(
        default=None,
        description="The request of the current create/import attempt; resent exactly.",
    )
    outcome_unknown: str | None = Field(
        default=None,
        description="create or import: Akua refused a resent request of the current attempt, "
        "so whether the first one made a cluster is unknown. Nothing is sent until the "
        "annotation akua.dev/retry gets a new value (or spec.clusterId is set).",
    )
    outcome_unknown_retry_token: str | None = Field(
        default=None, description="The akua.dev/retry value when the outcome became unknown."
    )
    requests: int = Field(
        default=0, description="Rename/suspend/resume requests sent (part of their keys)."
    )
    pending: str | None = Field(
        default=None,
        description="A rename, suspend or resume that was (maybe) sent and not answered yet; "
        "resent unchanged (same if-match, same idempotency key).",
    )
    pending_key: str | None = Field(default=None, description="Its idempotency key.")
    pending_if_match: str | None = Field(default=None, description="Its if-match etag.")
    pending_name: str | None = Field(
        default=None, description="A pending rename: the name sent (resent exactly)."
    )
    conflicts: int = Field(default=0, description="409s in a row on rename/suspend/resume.")
    stale_etag: str | None = Field(
        default=None,
        description="An etag known to be out of date: the if-match of the last "
        "rename/suspend/resume Akua accepted, or one it refused with a 409 naming no running "
        "operation. A read that still shows it lags (a stale read) and is not acted on.",
    )
    stale_reads: int = Field(default=0, description="Stale reads in a row since then.")
    enacted_generation: int | None = Field(
        default=None,
        description="The generation whose spec.suspended was last enacted (or found true).",
    )
    enacted_retry_token: str | None = Field(
        default=None, description="The akua.dev/retry value when it was enacted."
    )
    enacted_suspended: bool | None = Field(
        default=None, description="The spec.suspended value that was enacted."
    )
    failed: str | None = Field(
        default=None,
        description="What failed for good (create, import, suspend, resume); the operator "
        "tries again when the spec or the akua.dev/retry annotation changes.",
    )
    failed_generation: int | None = Field(default=None, description="Generation of the failure.")
    failed_retry_token: str | None = Field(
        default=None, description="The akua.dev/retry value at the failure."
    )
    last_failure: str | None = Field(default=None, description="Why it failed.")
    paused: bool | None = Field(
        default=None, description="Reconciling is paused by the annotation akua.dev/paused."
    )
    drift: str | None = Field(
        default=None,
        description="A reported drift the operator does not undo on its own, e.g. "
        "ResumedOutsideOperator.",
    )


class AkuaClusterStatus(_Model):
    """Observed state, written only by the operator."""

    cluster_id: str | None = Field(default=None, description="The managed Akua cluster id.")
    html_url: str | None = Field(default=None, description="The cluster in the Akua dashboard.")
    name: str | None = Field(default=None, description="Akua display name as observed.")
    workspace_id: str | None = Field(
        default=None,
        description="The Akua workspace of the cluster, recorded when Akua first showed the "
        "cluster or one of its operations. Every call about the cluster names it (akua-context), "
        "and only a 404 for such a call proves the cluster gone.",
    )
    provider: str | None = None
    state: str | None = Field(
        default=None, description="Akua state: pending, provisioning, active, suspended, deleting."
    )
    reconciling: bool | None = Field(
        default=None, description="Akua reports an operation in flight."
    )
    etag: str | None = Field(default=None, description="The cluster's etag as last observed.")
    credentials_identity: str | None = Field(
        default=None,
        description="The credentials Akua last showed the cluster to: the Secret's name and key "
        "(or 'operator default') and the workspace, never the token. For display: what proves a "
        "404 is workspaceId.",
    )
    observed_generation: int | None = Field(
        default=None, description="metadata.generation last reconciled."
    )
    progress: str | None = Field(
        default=None,
        description="Current operation and progress, e.g. 'delete 2/4 delete_workers'.",
    )
    operation: OperationStatus | None = Field(
        default=None, description="The Akua operation being followed, or the last one."
    )
    deletion: DeletionStatus | None = Field(default=None, description="Deletion bookkeeping.")
    lifecycle: LifecycleStatus | None = Field(
        default=None, description="Create/import/rename/suspend/resume bookkeeping."
    )
    api_errors: int = Field(
        default=0, description="Consecutive failed Akua API calls (drives the backoff)."
    )
    waiting_for: str | None = Field(
        default=None,
        description="What the resource waits for, in one line: 'akua: ...' (an Akua operation "
        "or answer), 'person: REASON' (only a person can move it on: the Stalled condition's "
        "message says how), 'backoff: ...', 'budget: ...', 'operator: ...'. Absent: nothing.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


class AkuaCluster(_Model):
    """A whole AkuaCluster object as far as the operator reads it."""

    api_version: Literal["akua.dev/v1alpha1"] = "akua.dev/v1alpha1"
    kind: Literal["AkuaCluster"] = "AkuaCluster"
    spec: AkuaClusterSpec = Field(default_factory=AkuaClusterSpec)
    status: AkuaClusterStatus = Field(default_factory=AkuaClusterStatus)


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Cluster ID", "type": "string", "jsonPath": ".status.clusterId"},
    {"name": "State", "type": "string", "jsonPath": ".status.state"},
    {"name": "Operation", "type": "string", "jsonPath": ".status.progress"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspended", "priority": 1},
    {"name": "Region", "type": "string", "jsonPath": ".spec.regionId", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
