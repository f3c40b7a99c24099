"""Typed models of the Akua API objects the operator uses.

They mirror ``components.schemas`` of the Akua OpenAPI contract (a test walks the contract and
fails when a model disagrees). Responses are parsed leniently where the API may grow: extra fields
are kept, and an enum value we do not know yet is kept as a plain ``str`` instead of failing.
Request bodies are strict (``additionalProperties: false`` in the contract).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
)

__all__ = [
    "ApiErrorEntry",
    "ApiErrorResponse",
    "Cluster",
    "ClusterCreateMetadata",
    "ClusterCreateResponse",
    "ClusterDeleteMetadata",
    "ClusterDeleteResponse",
    "ClusterList",
    "ClusterResumeMetadata",
    "ClusterResumeResponse",
    "ClusterState",
    "ClusterSuspendMetadata",
    "ClusterSuspendResponse",
    "CreateClusterRequest",
    "ExecutionType",
    "GenericOperationMetadata",
    "GenericOperationResponse",
    "ImportClusterRequest",
    "LastError",
    "NetworkProfile",
    "Operation",
    "OperationErrorInfo",
    "OperationList",
    "OperationMetadata",
    "OperationResponse",
    "OperationState",
    "OperationStep",
    "OwnerType",
    "Provider",
    "StepStatus",
    "UpdateClusterRequest",
    "Workspace",
    "WorkspaceList",
]


class ClusterState(StrEnum):
    PENDING = "pending"
    PROVISIONING = "provisioning"
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETING = "deleting"


class Provider(StrEnum):
    MANAGED_KAAS = "managed_kaas"
    IMPORTED_BYOC = "imported_byoc"


class OperationState(StrEnum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class ExecutionType(StrEnum):
    SYSTEM = "system"
    USER = "user"
    APPROVAL = "approval"
    SKIPPED = "skipped"


class OwnerType(StrEnum):
    INSTALL = "install"
    REPOSITORY_CHANGE_REQUEST = "repository_change_request"
    REPOSITORY = "repository"
    WORKSPACE = "workspace"
    MACHINE = "machine"
    CLUSTER = "cluster"
    PACKAGE = "package"


class NetworkProfile(StrEnum):
    LINUX_CILIUM = "linux_cilium"
    MIXED_OS_CALICO = "mixed_os_calico"


TERMINAL_OPERATION_STATES = frozenset(
    {OperationState.SUCCEEDED, OperationState.FAILED, OperationState.CANCELLED}
)

# Lenient enum fields: the known member when the value is known, else the plain string.
_LENIENT = Field(union_mode="left_to_right")

Timestamp = Annotated[int, Field(ge=0)]
ClusterId = Annotated[str, Field(min_length=1, max_length=54)]
WorkspaceId = Annotated[str, Field(min_length=1, max_length=53)]
OperationId = Annotated[str, Field(min_length=1, max_length=53)]
OrganizationId = Annotated[str, Field(min_length=1, max_length=54)]
RegionId = Annotated[str, Field(min_length=1, max_length=54)]
HtmlUrl = Annotated[str, Field(max_length=2048)]


class _Response(BaseModel):
    """Base of response objects: extra fields from a newer API are kept, not rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class _Request(BaseModel):
    """Base of request bodies: strict, like the contract's ``additionalProperties: false``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The wire body: unset optional fields left out, secrets revealed."""
        out: dict[str, Any] = {}
        for name, value in self:
            if value is None:
                continue
            if isinstance(value, SecretStr):
                out[name] = value.get_secret_value()
            elif isinstance(value, StrEnum):
                out[name] = value.value
            else:
                out[name] = value
        return out


# --- Cluster -------------------------------------------------------------------------------


class Cluster(_Response):
    id: ClusterId
    html_url: HtmlUrl
    name: str
    workspace_id: WorkspaceId
    state: ClusterState | str = _LENIENT
    provider: Provider | str = _LENIENT
    reconciling: bool
    created_at: Timestamp
    updated_at: Timestamp
    etag: str


class ClusterList(_Response):
    data: list[Cluster]
    has_more: bool
    next_cursor: str | None


# --- Operation -----------------------------------------------------------------------------


class OperationStep(_Response):
    name: str
    status: StepStatus | str = _LENIENT
    execution_type: ExecutionType | str = _LENIENT
    started_at: Timestamp
    completed_at: Timestamp | None
    error_message: str | None
    retryable: bool
    skippable: bool


class OperationErrorInfo(_Response):
    message: str


class LastError(_Response):
    message: str
    step_name: str | None = None


class ClusterCreateMetadata(_Response):
    type: Literal["cluster.create"]
    workspace_id: WorkspaceId
    region_id: RegionId
    name: str


class ClusterDeleteMetadata(_Response):
    type: Literal["cluster.delete"]
    cluster_id: ClusterId


class ClusterSuspendMetadata(_Response):
    type: Literal["cluster.suspend"]
    cluster_id: ClusterId


class ClusterResumeMetadata(_Response):
    type: Literal["cluster.resume"]
    cluster_id: ClusterId


class GenericOperationMetadata(_Response):
    """Metadata of an operation type this operator does not model; fields kept as extras."""

    type: str


class ClusterCreateResponse(_Response):
    type: Literal["cluster.create"]
    cluster_id: ClusterId


class ClusterDeleteResponse(_Response):
    type: Literal["cluster.delete"]
    cluster_id: ClusterId


class ClusterSuspendResponse(_Response):
    type: Literal["cluster.suspend"]
    cluster_id: ClusterId


class ClusterResumeResponse(_Response):
    type: Literal["cluster.resume"]
    cluster_id: ClusterId


class GenericOperationResponse(_Response):
    """Response of an operation type this operator does not model; fields kept as extras."""

    type: str


_CLUSTER_TYPES = frozenset(
    {"cluster.create", "cluster.delete", "cluster.suspend", "cluster.resume"}
)


def _type_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if isinstance(kind, str) and kind in _CLUSTER_TYPES:
        return kind
    return "other"


OperationMetadata = Annotated[
    Annotated[ClusterCreateMetadata, Tag("cluster.create")]
    | Annotated[ClusterDeleteMetadata, Tag("cluster.delete")]
    | Annotated[ClusterSuspendMetadata, Tag("cluster.suspend")]
    | Annotated[ClusterResumeMetadata, Tag("cluster.resume")]
    | Annotated[GenericOperationMetadata, Tag("other")],
    Discriminator(_type_tag),
]

OperationResponse = Annotated[
    Annotated[ClusterCreateResponse, Tag("cluster.create")]
    | Annotated[ClusterDeleteResponse, Tag("cluster.delete")]
    | Annotated[ClusterSuspendResponse, Tag("cluster.suspend")]
    | Annotated[ClusterResumeResponse, Tag("cluster.resume")]
    | Annotated[GenericOperationResponse, Tag("other")],
    Discriminator(_type_tag),
]


class Operation(_Response):
    id: OperationId
    workspace_id: WorkspaceId | None
    organization_id: OrganizationId | None
    owner_type: OwnerType | str = _LENIENT
    owner_id: str
    parent_operation_id: OperationId | None
    state: OperationState | str = _LENIENT
    done: bool
    html_url: HtmlUrl
    metadata: OperationMetadata
    response: OperationResponse | None
    error: OperationErrorInfo | None
    last_error: LastError | None
    started_at: Timestamp
    completed_at: Timestamp | None
    steps: list[OperationStep] = Field(default_factory=list)

    @property
    def type(self) -> str:
        """The operation type, e.g. ``cluster.delete`` (``metadata.type``)."""
        return self.metadata.type

    @property
    def steps_reported(self) -> bool:
        """Whether the answer carried ``steps`` at all. The contract makes them optional (an
        answer of ``:wait``, a list or a mutation may leave them out): an empty ``steps`` here
        means "not said", never "no steps"; read ``GET /operations/{id}`` for them."""
        return "steps" in self.model_fields_set

    @property
    def created_cluster_id(self) -> str | None:
        """The new cluster's id of a succeeded ``cluster.create`` operation, else None."""
        if isinstance(self.response, ClusterCreateResponse):
            return self.response.cluster_id
        return None

    @property
    def cluster_id(self) -> str | None:
        """The cluster this operation acts on, when the metadata or response names one."""
        meta_id = getattr(self.metadata, "cluster_id", None)
        if isinstance(meta_id, str):
            return meta_id
        return self.created_cluster_id

    @property
    def failed_step(self) -> OperationStep | None:
        """The last step whose status is ``failed``, if any."""
        for step in reversed(self.steps):
            if step.status == StepStatus.FAILED:
                return step
        return None


class OperationList(_Response):
    data: list[Operation]
    has_more: bool
    next_cursor: str | None


# --- Workspace -----------------------------------------------------------------------------


class Workspace(_Response):
    """A workspace the credentials reach (``GET /workspaces``); only ``id`` is used."""

    id: WorkspaceId
    name: str
    slug: str
    plan: dict[str, Any]
    workspace_class: str  # standard | platform | sandbox; kept as a string
    created_at: Timestamp
    updated_at: Timestamp
    etag: str


class WorkspaceList(_Response):
    data: list[Workspace]
    has_more: bool
    next_cursor: str | None


# --- Errors --------------------------------------------------------------------------------


class ApiErrorEntry(_Response):
    code: int
    message: str
    path: list[str] | None = None
    metadata: dict[str, str] | None = None


class ApiErrorResponse(_Response):
    success: Literal[False]
    errors: list[ApiErrorEntry]
    result: dict[str, Any]


# --- Request bodies ------------------------------------------------------------------------


class CreateClusterRequest(_Request):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    region_id: RegionId
    network_profile: NetworkProfile | None = None


class ImportClusterRequest(_Request):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    region_id: RegionId
    kubeconfig: Annotated[SecretStr, Field(min_length=1)]


class UpdateClusterRequest(_Request):
    name: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    region_id: RegionId | None = None
    provider: Provider | None = None
    kubeconfig: Annotated[SecretStr, Field(min_length=1)] | None = None
