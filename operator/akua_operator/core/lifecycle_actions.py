"""Actions and observations of the lifecycle (create, import, rename, suspend, resume).

Plain data, with no dependency on :mod:`akua_operator.core.types`, so that module can add them
to its ``Action`` and ``Observation`` unions. The handlers perform the actions.
"""

from __future__ import annotations

from dataclasses import dataclass

from akua_operator.akua.errors import AkuaError
from akua_operator.akua.models import Cluster
from akua_operator.resource.models import SecretKeyRef

# --------------------------------------------------------------------------------------------
# actions and observations of the lifecycle (the handlers perform them)


@dataclass(frozen=True)
class CreateCluster:
    """POST /clusters with an idempotency key."""

    name: str
    region_id: str
    network_profile: str | None
    idempotency_key: str
    resend: bool = False  # True: the attempt's request was (maybe) sent before; same body
    workspace: str | None = None  # sent as akua-context


@dataclass(frozen=True)
class ImportCluster:
    """Read the kubeconfig from the Secret, POST /clusters:import with it (and nothing else)."""

    name: str
    region_id: str
    namespace: str  # of the resource, where the Secret lives
    kubeconfig: SecretKeyRef
    idempotency_key: str
    resend: bool = False  # True: the attempt's request was (maybe) sent before; same body
    workspace: str | None = None  # sent as akua-context


@dataclass(frozen=True)
class RenameCluster:
    """PATCH /clusters/{id} {name} with if-match."""

    cluster_id: str
    name: str
    if_match: str
    idempotency_key: str
    workspace: str | None = None  # sent as akua-context


@dataclass(frozen=True)
class SuspendCluster:
    """POST /clusters/{id}:suspend with if-match."""

    cluster_id: str
    if_match: str
    idempotency_key: str
    workspace: str | None = None  # sent as akua-context


@dataclass(frozen=True)
class ResumeCluster:
    """POST /clusters/{id}:resume with if-match."""

    cluster_id: str
    if_match: str
    idempotency_key: str
    workspace: str | None = None  # sent as akua-context


LifecycleAction = CreateCluster | ImportCluster | RenameCluster | SuspendCluster | ResumeCluster
LIFECYCLE_ACTIONS = (CreateCluster, ImportCluster, RenameCluster, SuspendCluster, ResumeCluster)


@dataclass(frozen=True)
class ClusterAnswered:
    """The Cluster returned by our own import or rename (a synchronous answer)."""

    cluster: Cluster
    request: str  # "import" or "rename"


@dataclass(frozen=True)
class KubeconfigUnavailable:
    """The kubeconfig Secret of an import cannot be read (the message never holds its content)."""

    message: str


@dataclass(frozen=True)
class LifecycleFailed:
    """An Akua call of a lifecycle action failed with a typed error."""

    error: AkuaError
    action: LifecycleAction


LifecycleObservation = ClusterAnswered | KubeconfigUnavailable | LifecycleFailed
