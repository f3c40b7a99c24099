"""Guards against mass deletion (pure; the runtime gathers the facts and enforces the budget).

- The CRD guard: when the AkuaCluster CRD itself is being deleted (an uninstall, a GitOps
  prune of ``crds/``, an Argo CD Application deleted with cascade), every AkuaCluster gets a
  deletionTimestamp at once. Uninstalling an API is not a request to destroy what it manages:
  the resource is released *without* deleting its Akua cluster, with a Warning Event; the
  runtime records the cluster id (ConfigMap, log line, metric). ``--on-crd-deletion delete``
  (``Tuning.delete_on_crd_deletion``) turns the guard off.
- The deletion budget: the runtime allows at most N new delete attempts per minute per
  operator process; a budgeted DELETE it refuses comes back here as ``DeleteDeferred``, and the
  resource waits with a condition that says so and how to approve it
  (``akua.dev/approve-delete=true``).

Precedence in the deletion flow (core/deletion.py): the orphan annotation, then
``deletion.policy: Orphan``, then the CRD guard, then deletion protection, then everything else.
"""

from __future__ import annotations

from akua_operator.core.lifecycle import create_key
from akua_operator.core.status import (
    RECONCILING,
    clip,
    condition,
    set_kstatus,
)
from akua_operator.core.types import DeleteDeferred, Event, EventType, Facts, Release, Requeue
from akua_operator.resource.models import (
    ANNOTATION_APPROVE_DELETE,
    CRD_NAME,
    AkuaClusterStatus,
    ConditionStatus,
)

REASON_RELEASED_BY_CRD_DELETION = "ReleasedByCRDDeletion"
REASON_WAITING_FOR_BUDGET = "WaitingForDeletionBudget"
REASON_BUDGET_WAIT = "DeletionBudgetWait"
CAUSE_CRD_GUARD = "crd-guard"
#: Shortest wait of a deferred deletion (a refused take always has a slot a moment away).
MIN_BUDGET_RECHECK = 0.5


def delete_approved(annotations: dict[str, str]) -> bool:
    """``akua.dev/approve-delete: "true"``: this resource's DELETE bypasses the budget."""
    return annotations.get(ANNOTATION_APPROVE_DELETE, "").strip().lower() == "true"


def delete_started(status: AkuaClusterStatus) -> bool:
    deletion = status.deletion
    return deletion is not None and (deletion.attempt > 0 or deletion.pending)


def crd_read_needed(facts: Facts) -> bool:
    """Whether the runtime must read the CRD for this cycle (``facts.crd_deleting``): only
    while deleting, with the guard on, before a DELETE was started."""
    return (
        facts.meta.deleting
        and not facts.tuning.delete_on_crd_deletion
        and not delete_started(facts.status)
    )


def crd_guard_applies(facts: Facts, status: AkuaClusterStatus) -> bool:
    """Whether the CRD guard releases this resource now (no mutation; core/deletion.phase_of)."""
    return (
        facts.crd_deleting
        and not facts.tuning.delete_on_crd_deletion
        and not delete_started(status)
    )


def crd_guard(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Release | None:
    """Release without deleting when the AkuaCluster CRD is being deleted (unless the operator
    runs with ``--on-crd-deletion delete``). None: the guard does not apply.

    A deletion whose DELETE was already started (the resource was deleted on its own before
    the CRD) goes on: a person asked for that deletion, and the CRD waits for it.
    """
    if not crd_guard_applies(facts, status):
        return None
    cluster_id = facts.spec.cluster_id or status.cluster_id
    where = f"{facts.meta.namespace}/{facts.meta.name}"
    record = released_record(facts, status)
    if cluster_id:
        what = f"Akua cluster {cluster_id} was NOT deleted and still exists"
    else:
        what = "no Akua cluster id was recorded, and nothing was deleted"
        if "operationId" in record:
            what += f" (operation {record['operationId']} was still running and may create one)"
        elif "createIdempotencyKey" in record:
            what += (
                f" (a create named {record.get('createName', '?')} was sent under the "
                f"idempotency key {record['createIdempotencyKey']} and its answer never "
                f"recorded: it may have made a cluster)"
            )
    message = clip(
        f"The AkuaCluster CRD ({CRD_NAME}) is being deleted: {where} is released without "
        f"deleting, and {what}. The operator records it in its log and its released-clusters "
        f"ConfigMap (when it knows its namespace); delete the cluster in Akua by hand if it is "
        f"no longer wanted (the operator runs with --on-crd-deletion orphan)"
    )
    events.append(Event(EventType.WARNING, REASON_RELEASED_BY_CRD_DELETION, message))
    return Release(
        f"released by CRD deletion: Akua cluster {cluster_id or '(none)'} not deleted",
        cause=CAUSE_CRD_GUARD,
    )


def released_record(facts: Facts, status: AkuaClusterStatus) -> dict[str, str]:
    """What identifies the Akua cluster a CRD-guard release leaves behind (the runtime stores
    it, with the time, in the released-clusters ConfigMap): never a secret."""
    record = {
        "namespace": facts.meta.namespace,
        "name": facts.meta.name,
        "uid": facts.meta.uid,
        "reason": "the AkuaCluster CRD was being deleted; the Akua cluster was NOT deleted",
    }
    cluster_id = facts.spec.cluster_id or status.cluster_id
    if cluster_id:
        record["clusterId"] = cluster_id
    if status.workspace_id:
        record["workspaceId"] = status.workspace_id
    op = status.operation
    if op is not None and not op.done:
        record["operationId"] = op.id
    lc = status.lifecycle
    if not cluster_id and lc is not None and lc.create_attempt > 0 and lc.failed is None:
        record["createIdempotencyKey"] = create_key(facts.meta.uid, lc.create_attempt)
        if lc.create_request is not None:
            record["createName"] = lc.create_request.name
    return record


def on_deferred(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], obs: DeleteDeferred
) -> Requeue:
    """The deletion budget refused a new DELETE: wait with a condition that says so."""
    limit = obs.limit_per_minute
    retry_in = max(0.0, obs.retry_in)
    name, namespace = facts.meta.name or "NAME", facts.meta.namespace
    ns = f" -n {namespace}" if namespace else ""
    # The same text for the whole wait (no countdown): a message that changed on every recheck
    # would be a status write (and a `kubectl get -w` line) each time. The delete starts by
    # itself as soon as a slot is free; the log line says when the next one is.
    message = clip(
        f"Waiting for the deletion budget: this operator starts at most {limit} Akua "
        f"deletions per minute, and this delete starts as soon as a slot is free. "
        f"To delete now: kubectl annotate akuacluster {name}{ns} "
        f"{ANNOTATION_APPROVE_DELETE}=true"
    )
    reconciling = condition(status, RECONCILING)
    already = (
        reconciling is not None
        and reconciling.status == ConditionStatus.TRUE
        and reconciling.reason == REASON_WAITING_FOR_BUDGET
    )
    if not already:
        events.append(
            Event(
                EventType.NORMAL,
                REASON_BUDGET_WAIT,
                clip(
                    f"The delete of this resource waits for the deletion budget ({limit} per "
                    f"minute); approve it now with the annotation "
                    f"{ANNOTATION_APPROVE_DELETE}=true"
                ),
            )
        )
    set_kstatus(
        status,
        facts,
        ready=(False, REASON_WAITING_FOR_BUDGET, "the resource is being deleted"),
        reconciling=(True, REASON_WAITING_FOR_BUDGET, message),
        # Akua answered before this DELETE was decided: only the budget holds it now.
        stalled=(False, REASON_WAITING_FOR_BUDGET, ""),
    )
    delay = min(max(retry_in, MIN_BUDGET_RECHECK), facts.tuning.max_requeue)
    return Requeue(delay, REASON_WAITING_FOR_BUDGET)
