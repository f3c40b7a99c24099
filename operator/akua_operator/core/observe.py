"""The living resource (no deletionTimestamp): observe the Akua cluster and report it.

Today this adopts ``spec.clusterId`` and keeps status.etag/state/reconciling and the kstatus
conditions current. The lifecycle work (create, import, drift, suspend/resume, pause) extends
:func:`decide_observe`: see the ``TODO(lifecycle)`` markers for where each piece plugs in.
"""

from __future__ import annotations

from akua_operator.akua.errors import AkuaNotFound
from akua_operator.core import failures
from akua_operator.core.status import (
    mark_stalled,
    mirror_operation,
    progress,
    record_cluster,
    set_kstatus,
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
)
from akua_operator.resource.models import AkuaClusterStatus

REASON_ACTIVE = "Active"
REASON_NOT_FOUND = "ClusterNotFound"
REASON_NO_CLUSTER = "NoClusterId"
REASON_OPERATION = "OperationRunning"

_PROGRESSING_STATES = frozenset({"pending", "provisioning", "deleting"})


def decide_observe(
    facts: Facts, status: AkuaClusterStatus, obs: Observation, events: list[Event]
) -> Action:
    """Mutates ``status`` and ``events``; returns the next action."""
    cluster_id = facts.spec.cluster_id or status.cluster_id
    match obs:
        case None:
            if cluster_id is None:
                # TODO(lifecycle): create (managed_kaas) or import (imported_byoc) here.
                message = "spec.clusterId is not set; creating clusters is not supported yet"
                mark_stalled(status, facts, REASON_NO_CLUSTER, message)
                return Idle(message)
            if status.operation is not None and not status.operation.done:
                return FollowOperation(status.operation.id, wait=False)
            return ObserveCluster(cluster_id)
        case ClusterObserved(cluster=cluster):
            status.api_errors = 0
            first = status.cluster_id is None
            record_cluster(status, cluster)
            status.observed_generation = facts.meta.generation
            if first:
                events.append(
                    Event(
                        EventType.NORMAL,
                        "Observed",
                        f"Managing Akua cluster {cluster.id} ({cluster.state}, {cluster.html_url})",
                    )
                )
            # TODO(lifecycle): drift (name), suspend/resume decisions go here.
            _report(facts, status)
            return Idle("observed")
        case ClusterGone(cluster_id=gone):
            status.api_errors = 0
            status.state = None
            status.reconciling = None
            message = (
                f"Akua cluster {gone} does not exist (404); it was deleted outside Kubernetes or "
                f"the credentials see another workspace. Nothing is re-created."
            )
            stalled_before = any(
                c.type == "Stalled" and c.reason == REASON_NOT_FOUND and c.status == "True"
                for c in status.conditions
            )
            mark_stalled(status, facts, REASON_NOT_FOUND, message)
            if not stalled_before:
                events.append(Event(EventType.WARNING, REASON_NOT_FOUND, message))
            return Idle(message)
        case OperationObserved(operation=op):
            status.api_errors = 0
            mirrored = mirror_operation(op)
            events.extend(step_events(status.operation, mirrored))
            status.operation = mirrored
            status.progress = progress(mirrored)
            if not mirrored.done:
                _report(facts, status)
                return FollowOperation(op.id, wait=True)
            # TODO(lifecycle): on a done create, set status.cluster_id from op.created_cluster_id.
            if cluster_id is None:
                return Idle("operation ended")
            return ObserveCluster(cluster_id)
        case ApiFailed(error=error, action=action):
            if isinstance(action, FollowOperation) and isinstance(error, AkuaNotFound):
                status.operation = None
                status.progress = None
                if cluster_id is None:
                    return Idle("operation vanished")
                return ObserveCluster(cluster_id)
            outcome = failures.api_failure(
                status, facts, error, f"observing Akua cluster {cluster_id}"
            )
            events.extend(outcome.events)
            return outcome.action
        case CredentialsUnavailable(message=message):
            outcome = failures.credentials_unavailable(status, facts, message)
            events.extend(outcome.events)
            return outcome.action
    raise AssertionError(f"unknown observation {obs!r}")  # pragma: no cover


def _report(facts: Facts, status: AkuaClusterStatus) -> None:
    """kstatus conditions from the observed cluster and the followed operation."""
    state = status.state or "unknown"
    wanted = "suspended" if facts.spec.suspended else "active"
    op = status.operation
    if op is not None and not op.done:
        message = f"{progress(op)} (operation {op.id})"
        set_kstatus(
            status,
            facts,
            ready=(False, REASON_OPERATION, message),
            reconciling=(True, REASON_OPERATION, message),
            stalled=(False, REASON_OPERATION, ""),
        )
        return
    if status.reconciling or state in _PROGRESSING_STATES:
        message = f"Akua cluster is {state}" + (
            ", an operation is in flight" if status.reconciling else ""
        )
        set_kstatus(
            status,
            facts,
            ready=(False, "Progressing", message),
            reconciling=(True, "Progressing", message),
            stalled=(False, "Progressing", ""),
        )
        return
    if state == wanted:
        message = f"Akua cluster {status.cluster_id} is {state}"
        set_kstatus(
            status,
            facts,
            ready=(True, REASON_ACTIVE if state == "active" else "Suspended", message),
            reconciling=(False, REASON_ACTIVE, ""),
            stalled=(False, REASON_ACTIVE, ""),
        )
        return
    message = f"Akua cluster is {state}, the spec wants {wanted}"
    set_kstatus(
        status,
        facts,
        ready=(False, "StateDiffers", message),
        reconciling=(False, "StateDiffers", message),
        stalled=(False, "StateDiffers", ""),
    )
