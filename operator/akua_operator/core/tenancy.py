"""Many teams, one operator (issue 13): who may use the default credentials, who owns a cluster.

Pure rules; the runtime gathers the two facts (handlers/tenancy.py):

- ``Facts.default_credentials_permitted``: whether the resource's namespace may use the
  operator's own token (``--default-credentials-namespaces``, and in the cluster scope
  ``--default-credentials-namespace-selector``). A resource that names no Secret in a namespace
  that may not use it is refused before any Akua call: ``Stalled=True``
  ``DefaultCredentialsNotPermitted``, with the way out in the message. The upgrade path: a
  resource whose status records that it already acted under the default credentials keeps them
  for its own deletion (never strand a billed cluster, never hang a namespace deletion).
- ``Facts.claimed_by``: another AkuaCluster holds the claim (a Lease named after the cluster id
  in the operator's namespace) on this resource's cluster id. The resource is refused before any
  Akua call (``Stalled=True`` ``ClusterClaimed`` naming the owner); deleting it releases it
  without any Akua call: it never deletes a cluster another resource owns.

Precedence (docs/design.md, "What releases or holds without an Akua call"): while deleting, the
orphan annotation, ``deletion.policy: Orphan`` and the CRD guard come first, then these two
(credentials, then the claim), then everything else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from akua_operator.core.remote import cluster_id_of
from akua_operator.core.status import STALLED, clip, condition, mark_stalled
from akua_operator.core.types import Event, EventType, Facts, Idle, Release, Requeue
from akua_operator.resource.models import AkuaClusterStatus, ConditionStatus

REASON_NOT_PERMITTED = "DefaultCredentialsNotPermitted"
REASON_CLAIMED = "ClusterClaimed"
CAUSE_CLAIMED = "claimed-elsewhere"
CAUSE_NOT_PERMITTED = "credentials-not-permitted"
#: status.credentialsIdentity of a resource served by the operator's own token.
DEFAULT_IDENTITY = "operator default"


def names_secret(facts: Facts) -> bool:
    creds = facts.spec.credentials
    return creds is not None and creds.secret_ref is not None


def acted_under_default(facts: Facts, status: AkuaClusterStatus) -> bool:
    """The status records that this resource (naming no Secret) already reached Akua: Akua
    showed it its cluster under the default credentials, or it holds records of a create, an
    import, an operation or a delete. Before the credentials rule existed every such resource
    used the default credentials; it keeps them for its own deletion."""
    if names_secret(facts):
        return False
    if (status.credentials_identity or "").startswith(DEFAULT_IDENTITY):
        return True
    lc = status.lifecycle
    deletion = status.deletion
    return bool(
        status.cluster_id
        or status.workspace_id
        or status.operation is not None
        or (lc is not None and (lc.create_attempt > 0 or lc.create_request is not None))
        or (deletion is not None and (deletion.attempt > 0 or deletion.pending))
    )


def credentials_refused(facts: Facts, status: AkuaClusterStatus) -> bool:
    """The resource may not use the default credentials and has no right to keep them."""
    if names_secret(facts) or facts.default_credentials_permitted:
        return False
    return not (facts.meta.deleting and acted_under_default(facts, status))


def not_permitted_message(facts: Facts) -> str:
    ns = facts.meta.namespace or "this namespace"
    name = facts.meta.name or "NAME"
    return clip(
        f"The operator's default Akua credentials may not be used in namespace {ns} (the "
        f"operator serves them only to the namespaces it is configured for: "
        f"--default-credentials-namespaces, Helm value defaultCredentials.namespaces): no Akua "
        f"call was made. Either name a Secret with an Akua token in {ns} "
        f"(kubectl create secret generic akua-token -n {ns} --from-literal=token=sk_akua_...; "
        f"then set spec.credentials.secretRef.name: akua-token on AkuaCluster {name}), or ask "
        f"the operator's administrator to add {ns} to defaultCredentials.namespaces"
    )


def claimed_message(facts: Facts, cluster_id: str, owner: str) -> str:
    return clip(
        f"Akua cluster {cluster_id} is claimed by AkuaCluster {owner}: one cluster has one "
        f"owning resource, so this one makes no Akua call, and deleting it never deletes the "
        f"cluster. To move the cluster here, delete {owner} with the annotation "
        f"akua.dev/orphan=true (the claim passes on), then set akua.dev/retry on this resource; "
        f"or point spec.clusterId at another cluster"
    )


def _stall_once(
    facts: Facts, status: AkuaClusterStatus, events: list[Event], reason: str, message: str
) -> None:
    stalled = condition(status, STALLED)
    if stalled is None or stalled.status != ConditionStatus.TRUE or stalled.reason != reason:
        events.append(Event(EventType.WARNING, reason, message))
    mark_stalled(status, facts, reason, message)


def lifecycle_gate(
    facts: Facts, status: AkuaClusterStatus, events: list[Event]
) -> Idle | Requeue | None:
    """At the start of a living resource's cycle: refuse before any Akua call, or None."""
    if credentials_refused(facts, status):
        _stall_once(facts, status, events, REASON_NOT_PERMITTED, not_permitted_message(facts))
        return Idle(REASON_NOT_PERMITTED)
    cluster_id = cluster_id_of(facts, status)
    if facts.claimed_by is not None and cluster_id:
        message = claimed_message(facts, cluster_id, facts.claimed_by)
        _stall_once(facts, status, events, REASON_CLAIMED, message)
        return Idle(REASON_CLAIMED)
    return None


def deletion_gate(facts: Facts, status: AkuaClusterStatus, events: list[Event]) -> Release | None:
    """While deleting (after the orphan annotation, policy Orphan and the CRD guard): release
    without any Akua call a resource that may not act, or None.

    - Not permitted to use the default credentials and it never acted under them: it made and
      changed nothing in Akua, so there is nothing of its own to delete.
    - Another resource holds the claim on its cluster: it never deletes a cluster it does not
      own.
    """
    if credentials_refused(facts, status):
        events.append(
            Event(
                EventType.NORMAL,
                "Released",
                "Released without any Akua call: this resource may not use the operator's "
                "default credentials here and never acted under them",
            )
        )
        return Release("default credentials not permitted; nothing done", CAUSE_NOT_PERMITTED)
    cluster_id = cluster_id_of(facts, status)
    if facts.claimed_by is not None and cluster_id:
        events.append(
            Event(
                EventType.NORMAL,
                "Released",
                clip(
                    f"Released without deleting Akua cluster {cluster_id}: it is claimed by "
                    f"AkuaCluster {facts.claimed_by}"
                ),
            )
        )
        return Release(f"cluster {cluster_id} claimed by {facts.claimed_by}", CAUSE_CLAIMED)
    return None


# --- the namespace rule (pure; the runtime passes the namespace's labels) --------------------


_REQ = re.compile(r"^\s*(!)?\s*([A-Za-z0-9._/-]+)\s*(?:(==|=|!=)\s*([A-Za-z0-9._-]*))?\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "exists", "!exists"
    value: str = ""

    def matches(self, labels: dict[str, str]) -> bool:
        match self.op:
            case "exists":
                return self.key in labels
            case "!exists":
                return self.key not in labels
            case "=":
                return labels.get(self.key) == self.value
            case _:  # "!=": like Kubernetes, a missing key matches
                return labels.get(self.key) != self.value


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """An equality-based label selector (``a=b,c!=d,e,!f``), as kubectl ``-l`` takes it.
    Raises ValueError on anything else (set-based selectors are not supported)."""
    reqs: list[Requirement] = []
    for part in (p for p in text.split(",") if p.strip()):
        found = _REQ.match(part)
        if found is None:
            raise ValueError(f"not an equality-based label selector term: {part.strip()!r}")
        bang, key, op, value = found.groups()
        if bang and op:
            raise ValueError(f"not an equality-based label selector term: {part.strip()!r}")
        if op is None:
            reqs.append(Requirement(key, "!exists" if bang else "exists"))
        else:
            reqs.append(Requirement(key, "!=" if op == "!=" else "=", value or ""))
    return tuple(reqs)


@dataclass(frozen=True)
class CredentialsScope:
    """Which namespaces the default credentials serve: the listed ones (``*``: every watched
    namespace) plus, in the cluster scope, those whose labels match the selector."""

    namespaces: frozenset[str] = frozenset()
    selector: tuple[Requirement, ...] | None = None

    @property
    def everyone(self) -> bool:
        return "*" in self.namespaces

    def permits(self, namespace: str, labels: dict[str, str] | None) -> bool:
        """``labels``: the namespace's labels, or None when not read (no selector)."""
        if self.everyone or namespace in self.namespaces:
            return True
        if self.selector is None or labels is None:
            return False
        return all(req.matches(labels) for req in self.selector)

    def describe(self) -> str:
        if self.everyone:
            return "every watched namespace"
        parts = [f"namespaces {sorted(self.namespaces)}"] if self.namespaces else []
        if self.selector is not None:
            parts.append("namespaces matching the label selector")
        return " and ".join(parts) or "no namespace"
