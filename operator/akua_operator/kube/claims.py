"""One owner per Akua cluster: a claim per cluster id, a Lease in the operator's namespace.

Every operator instance (replicas, shards, a namespaced and a cluster-scoped install sharing the
operator namespace) sees the same Lease ``akua-claim-<cluster id>`` (coordination.k8s.io/v1):
``spec.holderIdentity`` is ``<namespace>/<name>/<uid>`` of the owning AkuaCluster. Created with
``create`` (the API server refuses a second create: exactly one claimant wins), taken over with
``replace`` at the read resourceVersion (one of two concurrent takeovers wins). A Lease is never
renewed (no durations): it is a record, not a lock with an expiry.

The sync kubernetes client runs in threads (``asyncio.to_thread``).

A claim this process holds (it created it, found itself the holder, or took it over) is
remembered for ``HELD_TTL`` seconds, so the re-runs of a handler (one per step boundary while a
deletion is followed) cost no Lease read. Nobody else may take a claim whose holder still exists
and names the cluster, so the memory can only be wrong if the Lease is removed or rewritten by
hand: it is then read again at most ``HELD_TTL`` later. A claim held by another resource is
never remembered (its holder may go away at any moment).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from akua_operator.resource.models import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

LEASE_PREFIX = "akua-claim-"
ANNOTATION_CLUSTER_ID = "akua.dev/cluster-id"
LABEL_RECORD = "akua.dev/record"
#: How long a claim this process holds is trusted without reading its Lease again (seconds).
HELD_TTL = 300.0


def lease_name(cluster_id: str) -> str:
    """A DNS-1123 subdomain name for the claim of ``cluster_id``; a hash suffix when the id had
    to be changed to fit (so two ids never share a Lease)."""
    clean = re.sub(r"[^a-z0-9-]", "-", cluster_id.lower()).strip("-")[:200] or "x"
    if clean != cluster_id:
        clean = f"{clean}-{hashlib.sha256(cluster_id.encode()).hexdigest()[:10]}"
    return LEASE_PREFIX + clean


@dataclass(frozen=True)
class Claimant:
    namespace: str
    name: str
    uid: str

    @property
    def identity(self) -> str:
        return f"{self.namespace}/{self.name}/{self.uid}"

    @property
    def display(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, identity: str) -> Claimant | None:
        parts = identity.split("/")
        if len(parts) != 3 or not all(parts):
            return None
        return cls(*parts)


def _rv(lease: Any) -> str | None:
    return lease.metadata.resource_version if lease.metadata is not None else None


def _cluster_id_of(obj: dict[str, Any]) -> str | None:
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    value = spec.get("clusterId") or status.get("clusterId")
    return str(value) if value else None


def _recorded(obj: dict[str, Any]) -> str | None:
    value = (obj.get("status") or {}).get("clusterId")
    return str(value) if value else None


def _claimant(obj: dict[str, Any]) -> Claimant:
    meta = obj.get("metadata") or {}
    return Claimant(str(meta.get("namespace", "")), str(meta.get("name", "")), str(meta.get("uid")))


def first_recorder(cluster_id: str, objects: Iterable[dict[str, Any]]) -> Claimant | None:
    """Of the AkuaClusters whose status records ``cluster_id`` (they acted on it before claims
    existed), the one that recorded it first: the oldest resource (creationTimestamp, then uid)."""
    found = [o for o in objects if _recorded(o) == cluster_id]
    if not found:
        return None
    first = min(
        found,
        key=lambda o: (
            str((o.get("metadata") or {}).get("creationTimestamp", "")),
            str((o.get("metadata") or {}).get("uid", "")),
        ),
    )
    return _claimant(first)


class ClaimsIO:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        *,
        watched: tuple[str, ...] | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``watched``: the namespaces to look in for earlier recorders (None: all)."""
        from kubernetes import client as k8s

        self._k8s = k8s
        self._clock = clock
        # cluster id -> (holder identity, when this process last learned it holds the claim)
        self._held: dict[str, tuple[str, float]] = {}
        self.namespace = namespace
        self.watched = watched
        self.leases = k8s.CoordinationV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)

    # --- sync -----------------------------------------------------------------------------

    def _list_recorders(self) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        items: list[dict[str, Any]] = []
        try:
            if self.watched is None:
                got: Any = self.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
                items.extend(got.get("items") or [])
            else:
                for ns in self.watched:
                    got2: Any = self.custom.list_namespaced_custom_object(
                        GROUP, VERSION, ns, PLURAL
                    )
                    items.extend(got2.get("items") or [])
        except ApiException as exc:
            if exc.status != 403:
                raise
            log.warning("cannot list AkuaClusters to find an earlier claimant (403)")
        return items

    def _owner_alive(self, owner: Claimant, cluster_id: str) -> bool:
        """The owning resource still exists (same uid) and still names the cluster. A read
        refused (403: another instance's namespace) counts as alive: never take a claim on a
        guess."""
        from kubernetes.client.exceptions import ApiException

        try:
            obj: Any = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, owner.namespace, PLURAL, owner.name
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status == 403:
                return True
            raise
        if str((obj.get("metadata") or {}).get("uid")) != owner.uid:
            return False
        return _cluster_id_of(obj) == cluster_id

    def _body(self, name: str, cluster_id: str, holder: Claimant, rv: str | None = None) -> Any:
        k8s = self._k8s
        return k8s.V1Lease(
            metadata=k8s.V1ObjectMeta(
                name=name,
                namespace=self.namespace,
                resource_version=rv,
                labels={
                    "app.kubernetes.io/managed-by": "akua-operator",
                    LABEL_RECORD: "cluster-claim",
                },
                annotations={
                    ANNOTATION_CLUSTER_ID: cluster_id,
                    "akua.dev/description": (
                        "The AkuaCluster (spec.holderIdentity: namespace/name/uid) that owns this "
                        "Akua cluster; the operator refuses any other (ClusterClaimed)."
                    ),
                },
            ),
            spec=k8s.V1LeaseSpec(holder_identity=holder.identity),
        )

    def claim_sync(self, cluster_id: str, me: Claimant) -> str | None:
        """Claim ``cluster_id`` for ``me``. None: ``me`` holds it; else the owner's
        ``namespace/name``."""
        from kubernetes.client.exceptions import ApiException

        name = lease_name(cluster_id)
        for _ in range(3):
            try:
                lease = self.leases.read_namespaced_lease(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                lease = None
            if lease is None:
                holder = first_recorder(cluster_id, self._list_recorders()) or me
                try:
                    self.leases.create_namespaced_lease(
                        self.namespace, self._body(name, cluster_id, holder)
                    )
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    continue
                return None if holder == me else holder.display
            identity = (lease.spec.holder_identity if lease.spec else None) or ""
            owner = Claimant.parse(identity)
            if owner == me:
                return None
            if owner is not None and self._owner_alive(owner, cluster_id):
                return owner.display
            log.info(
                "claim on Akua cluster %s: holder %s is gone; %s takes it over",
                cluster_id,
                identity or "(none)",
                me.display,
            )
            try:
                self.leases.replace_namespaced_lease(
                    name,
                    self.namespace,
                    self._body(name, cluster_id, me, _rv(lease)),
                )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                continue
            return None
        raise RuntimeError(f"the claim on Akua cluster {cluster_id} keeps changing")

    def release_sync(self, cluster_id: str, me: Claimant) -> None:
        """Delete the claim if ``me`` holds it (precondition: the read resourceVersion)."""
        from kubernetes.client.exceptions import ApiException

        name = lease_name(cluster_id)
        try:
            lease = self.leases.read_namespaced_lease(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        if (lease.spec.holder_identity if lease.spec else None) != me.identity:
            return
        try:
            self.leases.delete_namespaced_lease(
                name,
                self.namespace,
                body=self._k8s.V1DeleteOptions(
                    preconditions=self._k8s.V1Preconditions(resource_version=_rv(lease))
                ),
            )
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    # --- async ----------------------------------------------------------------------------

    async def claim(self, cluster_id: str, me: Claimant) -> str | None:
        """As :meth:`claim_sync`; a claim this process holds is answered from memory."""
        if self.holds(cluster_id, me):
            return None
        self._held.pop(cluster_id, None)
        owner = await asyncio.to_thread(self.claim_sync, cluster_id, me)
        if owner is None:
            self._remember(cluster_id, me)
        return owner

    async def release(self, cluster_id: str, me: Claimant) -> None:
        held = self._held.get(cluster_id)
        if held is not None and held[0] == me.identity:
            del self._held[cluster_id]
        await asyncio.to_thread(self.release_sync, cluster_id, me)

    def holds(self, cluster_id: str, me: Claimant) -> bool:
        """This process knows (within HELD_TTL) that ``me`` holds the claim on ``cluster_id``."""
        held = self._held.get(cluster_id)
        return held is not None and held[0] == me.identity and self._clock() - held[1] < HELD_TTL

    def _remember(self, cluster_id: str, me: Claimant) -> None:
        now = self._clock()
        if len(self._held) >= 4096:  # bounded: forget the expired ones first
            for key, (_, at) in list(self._held.items()):
                if now - at >= HELD_TTL:
                    del self._held[key]
        self._held[cluster_id] = (me.identity, now)
