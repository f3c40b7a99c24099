"""The reconcile cycle: gather facts, ask the core, apply its decision, perform its action.

One :class:`Runtime` per process holds the shared Akua client and the Kubernetes I/O. A kopf
handler calls :meth:`Runtime.cycle`, which loops

    decision = core.decide(facts, observation)
    write decision.status_patch (if any), emit decision.events
    observation = perform(decision.action)      # one Akua call

until the action is Release, Requeue or Idle, and returns that action; the handler turns it
into kopf's language (return, TemporaryError). The status patch is written *before* the action
is performed, so an operation id (or a DELETE's idempotency key) is recorded before anything
waits on it, and a restarted operator resumes instead of repeating.

The status of a Release is not written here but handed to kopf (``kopf_patch``, the delete
handler's ``patch``): kopf PATCHes ``/status`` with it and then removes the finalizer with a
JSON patch that tests ``metadata.resourceVersion`` against the version that status PATCH
returned. Written here, it (and every status write of the same run) would leave kopf testing the
version of the body it handed to the handler, and the finalizer patch would fail (422) until an
event of our own writes caught up. The core never releases with an empty status
(``status.deletion.releasedAt``), so that PATCH always happens.

A run follows an operation for at most ``FOLLOW_SECONDS``, then returns ``Requeue(0)``: the
handler asks kopf to re-run it at once (one progress write), so annotations (akua.dev/orphan,
akua.dev/retry) are read again within about that long. Following makes no Akua call of its own:
the operation tracker of the credentials (handlers/optracker.py, one per workspace, shared by
every resource) follows every operation, and the run waits for its operation's next change
(``OperationTracker.changed``), never polling.

Guards against mass deletion (core/guards.py): while deleting, the runtime reads the AkuaCluster
CRD (``Facts.crd_deleting``) and records releases by the CRD guard (log, metric, ConfigMap); a
budgeted DELETE that the process's deletion budget (handlers/budget.py) refuses is never
performed: the core decides again from the same facts with ``DeleteDeferred``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from akua_operator import telemetry
from akua_operator.akua.client import AkuaClient, ClientConfig, Credentials
from akua_operator.akua.errors import AkuaError, AkuaNotFound, AkuaResponseError, AkuaTimeout
from akua_operator.akua.models import Operation
from akua_operator.core import Decision, Facts, Meta, Tuning, advance, decide, tenancy
from akua_operator.core.deletion import orphan_asked
from akua_operator.core.guards import CAUSE_CRD_GUARD, crd_read_needed, released_record
from akua_operator.core.lifecycle import token_workspace_needed
from akua_operator.core.lifecycle_actions import LIFECYCLE_ACTIONS
from akua_operator.core.remote import cluster_id_of
from akua_operator.core.shards import Shards
from akua_operator.core.tracking import PlanTuning
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
    FollowOperation,
    Idle,
    Observation,
    ObserveCluster,
    OperationObserved,
    Release,
    Requeue,
)
from akua_operator.handlers.budget import DeletionBudget
from akua_operator.handlers.lifecycle import perform_lifecycle
from akua_operator.handlers.optracker import OperationTracker, Trackers
from akua_operator.kube import (
    CRDUnreadable,
    CredentialsError,
    KubeIO,
    ObjectRef,
    SecretNotFound,
    TokenSource,
)
from akua_operator.kube.claims import Claimant, ClaimsIO
from akua_operator.resource.models import (
    CRD_NAME,
    AkuaClusterSpec,
    AkuaClusterStatus,
    CredentialsSpec,
)
from akua_operator.settings import Settings

log = logging.getLogger("akua_operator")

# Bounds of one cycle: at most MAX_ACTIONS Akua calls; following an operation (the tracker's
# changes, at most MAX_FOLLOWS of them) ends FOLLOW_SECONDS after the cycle started (a first
# wait always gets at least the wait timeout). Each run that ends this way costs kopf one write
# (its progress record), and the next run reads the annotations (akua.dev/orphan,
# akua.dev/retry) again: they act within about FOLLOW_SECONDS.
MAX_ACTIONS = 8
MAX_FOLLOWS = 64
FOLLOW_SECONDS = 20.0

REASON_CACHED_CREDENTIALS = "CachedCredentials"
#: The reason of the Requeue(0) that ends a delete run on a change it shows (handed to kopf):
#: the handler comes back at once whatever the run lasted (an Akua answer moved it on: no spin).
RERUN_SHOWN = "continue following: a change shown"

#: A read of the AkuaCluster CRD is reused for this long (and only by resources whose deletion
#: this process saw before the read was sent: see Runtime._crd_deleting).
CRD_READ_TTL = 5.0
#: Attempts to write one record into the released-clusters ConfigMap (one retry).
RECORD_ATTEMPTS = 2


#: Namespace labels (the default credentials' selector) are reused for this long.
LABELS_TTL = 10.0


def credentials_scope(settings: Settings) -> tenancy.CredentialsScope:
    """Which namespaces the operator's default credentials serve (docs/security.md): the
    listed ones; unset: the namespaces given with --namespace, none with --all-namespaces."""
    names = settings.default_credentials_namespaces
    if names is None:
        names = () if settings.all_namespaces else settings.namespaces
    selector = settings.default_credentials_namespace_selector
    return tenancy.CredentialsScope(
        frozenset(names), tenancy.parse_selector(selector) if selector else None
    )


def tuning_from(settings: Settings) -> Tuning:
    return Tuning(
        observe_interval=settings.observe_interval,
        wait_timeout=settings.wait_timeout,
        backoff_base=settings.backoff_base,
        backoff_cap=settings.backoff_cap,
        delete_retry_base=settings.delete_retry_base,
        credentials_backoff=settings.credentials_backoff,
        retain_recheck=settings.retain_recheck,
        max_conflicts=settings.max_conflicts,
        delete_on_crd_deletion=settings.on_crd_deletion == "delete",
        step_events=settings.step_events,
    )


@dataclass(slots=True)
class ResourceState:
    """Per-resource memory (kept in kopf's per-object memo). ``status`` is held only until a
    body at or past that write comes back (``Runtime._facts``): an idle resource keeps no copy."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    resource_version: str | None = None  # of our last status write
    # When a cycle of this process last asked Akua about this resource (time.monotonic()): a
    # list item whose page was requested before it may be older than what the status shows
    # from that answer (Runtime.cycle's ``seed``).
    akua_asked_at: float = 0.0
    status: dict[str, Any] | None = None  # the status as we last wrote it
    # The status as it is once kopf has written the patch a delete run ended with, and kopf's
    # retry count in that write (the run's ``retry`` + 1). A run handed an older body (kopf's
    # ``retry`` is lower: the watch had not shown that write yet) decides on this instead.
    handed: dict[str, Any] | None = None
    handed_retry: int = 0
    # The last credentials read from spec.credentials.secretRef and the Secret they came from
    # (namespace, name, key, workspace). Memory only: never status, logs or Events. A deletion
    # whose Secret was deleted first (GitOps prune, namespace deletion) finishes with them.
    credentials: Credentials | None = field(default=None, repr=False)
    credentials_from: tuple[str, str, str, str | None] | None = None
    cached_credentials_announced: bool = False
    # (uid, deletionTimestamp) of the deletion this process saw, and when it first saw it
    # (time.monotonic): only a CRD read sent after that moment tells whether the CRD deletion
    # caused it (the API server marks the CRD before it deletes the AkuaClusters).
    deletion_seen: tuple[str, str] | None = None
    deletion_seen_at: float = 0.0
    # The operation this resource follows through its tracker (one reference held there) and
    # the tracker's version of it the core last decided on.
    following: tuple[OperationTracker, str] | None = field(default=None, repr=False)
    followed_version: int = 0
    # The status a Release handed to kopf (the delete handler's patch). A later delete run on
    # this object hands the same again and decides nothing: it runs on an event older than
    # kopf's own release (the object may be gone: a status write would 404, an Event repeat
    # "Deleted"), or kopf retries its patch, which needs exactly the same release.
    released: dict[str, Any] | None = None
    # A body with a deletionTimestamp was seen (a deletion never ends but in removal): an
    # observe-only cycle on an older body of this object decides nothing.
    deleting: bool = False


class Runtime:
    """Process-wide: the Akua client, Kubernetes I/O, settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        token_source: TokenSource | None = None,
        kube: KubeIO | None = None,
        client: AkuaClient | None = None,
        claims: ClaimsIO | None = None,
    ) -> None:
        self.settings = settings
        self.scope = credentials_scope(settings)
        self._claims = claims
        self._labels: dict[str, tuple[float, dict[str, str] | None]] = {}
        self._no_claims_logged = False
        self.tuning = tuning_from(settings)
        self.token_source = token_source or TokenSource.from_env()
        self._kube = kube
        self._client = client
        self.budget = DeletionBudget(settings.deletion_budget_per_minute)
        self.shards = Shards(settings.shard, settings.shard_names)
        # The last read of the AkuaCluster CRD: (time.monotonic() when sent, deleting).
        self._crd_read: tuple[float, bool] | None = None
        self._crd_lock = asyncio.Lock()
        self._crd_unreadable_logged = False
        self._no_namespace_logged = False
        self._trackers: Trackers | None = None

    @property
    def trackers(self) -> Trackers:
        """The operation trackers, one per credentials key (handlers/optracker.py)."""
        if self._trackers is None:
            s = self.settings
            rate = s.step_read_rate
            if rate is None:
                rate = s.api_rate if s.api_rate > 0 else 20.0
            self._trackers = Trackers(
                self.client,
                PlanTuning(
                    horizon=s.sweep_horizon,
                    step_read_rate=rate,
                    wait_timeout=max(1, min(60, s.wait_timeout)),
                ),
            )
        return self._trackers

    @property
    def kube(self) -> KubeIO:
        if self._kube is None:
            raise RuntimeError("Runtime.start() was not called")
        return self._kube

    @property
    def client(self) -> AkuaClient:
        if self._client is None:
            raise RuntimeError("Runtime.start() was not called")
        return self._client

    async def start(self) -> None:
        """Create the shared clients (kopf startup)."""
        if self._kube is None:
            api_client = await asyncio.to_thread(_kubernetes_api_client)
            self._kube = KubeIO(api_client)
        ns = self.settings.operator_namespace
        if self._claims is None and ns and isinstance(self._kube, KubeIO):
            watched = None if self.settings.all_namespaces else self.settings.namespaces
            self._claims = ClaimsIO(self._kube.api_client, ns, watched=watched)
        if self._client is None:
            s = self.settings
            self._client = AkuaClient(
                ClientConfig(
                    base_url=s.api_url,
                    ca_file=s.ca_file,
                    timeout=s.api_timeout,
                    max_retries=s.api_max_retries,
                    backoff_base=min(1.0, s.backoff_base),
                    backoff_cap=min(10.0, s.backoff_cap),
                    # Longer Retry-After waits are the core's Requeue (it honours retry_after),
                    # not a sleep inside a handler that holds the resource's lock.
                    retry_after_cap=max(0.0, s.api_retry_after_cap),
                    rate=s.api_rate,
                    burst=s.api_burst,
                )
            )
            telemetry.current().attach_client(self._client)

    async def stop(self) -> None:
        """Stop the operation trackers, close the shared clients (kopf cleanup)."""
        if self._trackers is not None:
            await self._trackers.stop()
            self._trackers = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # --- the cycle --------------------------------------------------------------------------

    async def cycle(
        self,
        body: Mapping[str, Any],
        state: ResourceState,
        *,
        deleting: bool,
        observe_only: bool = False,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = log,
        kopf_patch: MutableMapping[str, Any] | None = None,
        seed: ClusterObserved | None = None,
        retry: int | None = None,
    ) -> Action:
        """Run decide/apply/perform until the core says Release, Requeue or Idle.

        ``seed``: the cluster as a list sweep showed it (handlers/observer.py). When the core's
        first read of the cluster is ``ObserveCluster`` of that cluster, it decides on the seed
        instead of a ``GET /clusters/{id}`` (every other action is performed as usual).

        ``retry`` (kopf's retry count of the delete handler): tells a body older than kopf's
        write of the previous run's patch (``ResourceState.handed``) from a current one.

        ``kopf_patch`` (the delete handler's kopf ``patch``): the status patch of a ``Release``
        goes into it instead of being written here, so kopf writes it just before it removes
        the finalizer (module docstring).

        ``observe_only`` (every handler but the delete handler): when the resource is being
        deleted (``metadata.deletionTimestamp`` in the live body, which may have appeared while
        this call waited for the per-resource lock) return ``Idle`` without deciding anything.
        Only the delete handler runs the deletion flow, so its Events, status writes and the
        ``finalizer_released`` metric happen once.
        """
        async with state.lock:
            if kopf_patch is not None and state.released is not None:
                _merge_into(kopf_patch.setdefault("status", {}), copy.deepcopy(state.released))
                logger.debug("released already: the same release handed to kopf again")
                return Release("released already", cause="released")
            if kopf_patch is not None:
                _forget_handed(state, retry)
            facts = self._facts(body, state, deleting=deleting)
            state.deleting = state.deleting or facts.meta.deleting
            if observe_only and state.deleting:
                # Also on a body read before the deletion began (a list sweep's follow-up read
                # the object, then waited for the lock while a delete run held it): the
                # resource is being deleted, or already gone; a status write would only 404.
                return Idle("being deleted: the delete handler owns the resource")
            ref = ObjectRef(facts.meta.namespace, facts.meta.name, facts.meta.uid)
            # Sharded: the shard that starts a deletion records itself (core/shards.py) with
            # the first status write, and before any Akua call at the latest.
            shard_record = self._shard_record(facts) if deleting else None
            if crd_read_needed(facts):
                seen_at = _deletion_seen_at(body, state)
                facts = replace(facts, crd_deleting=await self._crd_deleting(seen_at, logger))
            facts = await self._tenancy(facts, logger)
            claimed = cluster_id_of(facts, facts.status)
            obs: Observation = None
            creds: Credentials | None = None
            if (
                facts.default_credentials_permitted
                and facts.claimed_by is None
                and token_workspace_needed(facts)
            ):
                # (never before the tenancy rules: a refused resource makes no Akua call)
                # a new create/import attempt records the workspace it goes to (core/lifecycle)
                found = await self._credentials(facts, state, ref, logger)
                if not isinstance(found, CredentialsUnavailable):
                    creds = found
                    facts = replace(facts, token_workspace=await self._token_workspace(creds))
            started = time.monotonic()
            follows = calls = 0
            # MAX_ACTIONS calls and MAX_FOLLOWS changes at most, and the core decides on the
            # answer to each of them (the last included, hence + 1): an answer never decided on
            # would leave its request recorded as pending, and the next run would send it again.
            known: Mapping[str, Any] | None = _known_status(body, state)
            # Read stamps (operation.lastReadAt alone) held back for the run's last write.
            held: dict[str, Any] = {}
            refreshed = False  # the core decided on an unchanged view after a quiet wait
            for _ in range(MAX_ACTIONS + MAX_FOLLOWS + 1):
                decision = decide(facts, obs)
                decision = self._apply_budget(facts, decision, logger)
                action = decision.action
                ends: Requeue | None = None  # the run ends after this decision, going on later
                if isinstance(action, FollowOperation):
                    remaining = FOLLOW_SECONDS - (time.monotonic() - started)
                    if follows >= MAX_FOLLOWS or (follows and action.wait and remaining <= 0):
                        ends = Requeue(0.0, "continue following")
                elif not isinstance(action, Release | Requeue | Idle) and calls >= MAX_ACTIONS:
                    ends = Requeue(0.0, "continue")
                patch = decision.status_patch
                if shard_record is not None and (patch is not None or isinstance(action, Release)):
                    patch = {**(patch or {})}
                    _merge_into(patch, shard_record)
                    shard_record = None
                if (
                    kopf_patch is not None
                    and patch is not None
                    and ends is None
                    and isinstance(obs, OperationObserved)
                    and isinstance(action, FollowOperation)
                ):
                    # An answer changed what the resource shows while it follows an operation
                    # (a step boundary, the DELETE's answer). A read stamp alone waits for the
                    # run's last write. Otherwise, if a new run would go on following the same
                    # operation (the core decides so from this status alone), nothing is sent
                    # before it: the run ends here and kopf writes the change together with its
                    # progress record, one PATCH (handlers/akuacluster.py: progress_storage).
                    if _only_read_stamp(patch):
                        _merge_into(held, patch)
                        patch = None
                    elif _resumes(facts, decision, action):
                        ends = Requeue(0.0, RERUN_SHOWN)
                        if creds is not None:
                            # the next run goes on from this answer (no read of it first)
                            self._start_following(action, creds, state, obs.operation)
                if kopf_patch is not None and (
                    ends is not None or isinstance(action, Release | Requeue | Idle)
                ):
                    if patch is not None:
                        _merge_into(held, patch)
                    if held:
                        _merge_into(kopf_patch.setdefault("status", {}), held)
                        held = {}
                    _remember_handed(state, known, kopf_patch, retry)
                elif patch is not None:
                    if held:
                        _merge_into(held, patch)
                        patch, held = held, {}
                    known = await self._write_status(ref, patch, state, known)
                for event in decision.events:
                    logger.info("%s: %s", event.reason, event.message)
                    await self.kube.emit_event(ref, event)
                facts = replace(advance(facts, decision), now=_now())
                self._report(ref, facts, action)
                if isinstance(action, Release) and action.cause == CAUSE_CRD_GUARD:
                    await self._released_by_crd_guard(ref, facts, logger)
                if isinstance(action, Release):
                    await self._release_claim(facts, action, logger)
                    if kopf_patch is not None:
                        state.released = copy.deepcopy(dict(kopf_patch.get("status") or {}))
                if isinstance(action, Release | Requeue | Idle):
                    _unfollow(state)
                    return action
                if ends is not None:
                    return ends
                if isinstance(action, FollowOperation):
                    follows += 1
                else:
                    calls += 1
                cluster_id = cluster_id_of(facts, facts.status)
                if cluster_id and cluster_id != claimed and facts.claimed_by is None:
                    # A cluster id learned in this cycle (a create or import answered): claim
                    # it before the first call about it.
                    claimed = cluster_id
                    owner = await self._claim(facts, cluster_id, logger)
                    if owner is not None:
                        facts, obs = replace(facts, claimed_by=owner), None
                        continue
                if creds is None:
                    # (also before a seed stands in for the read: the Secret is checked and the
                    # copy of its token a deletion may need later is kept, as with a GET)
                    found = await self._credentials(facts, state, ref, logger)
                    if isinstance(found, CredentialsUnavailable):
                        obs = found
                        continue
                    creds = found
                if (
                    seed is not None
                    and seed.read_at is not None
                    and seed.read_at < state.akua_asked_at
                ):
                    # The list page was requested before this process last asked Akua about
                    # the resource (a rename or suspend answered meanwhile): deciding on it
                    # could undo what status shows, or send the etag an answer replaced. Read
                    # the cluster instead.
                    seed = None
                if (
                    seed is not None
                    and isinstance(action, ObserveCluster)
                    and action.cluster_id == seed.cluster.id
                    and action.workspace in (None, seed.cluster.workspace_id)
                ):
                    obs, seed = seed, None  # the list item instead of a GET
                    continue
                if shard_record is not None:
                    known = await self._write_status(ref, shard_record, state, known)
                    shard_record = None
                if isinstance(action, FollowOperation):
                    op_seed = obs.operation if isinstance(obs, OperationObserved) else None
                    timeout = FOLLOW_SECONDS - (time.monotonic() - started)
                    if follows == 1:  # the first wait of a run: at least one wait timeout
                        timeout = max(timeout, float(self.tuning.wait_timeout))
                    state.akua_asked_at = time.monotonic()
                    seen = await self._follow(action, creds, state, timeout, op_seed)
                    if seen is None and not refreshed and state.following is not None:
                        # Nothing changed in time: the core decides once on what is known now
                        # (the operation was read meanwhile: operation.lastReadAt may move,
                        # at most every 30 s), then the run ends below.
                        refreshed = True
                        tracker, op_id = state.following
                        current = tracker.current(op_id)
                        if current is not None:
                            obs = OperationObserved(current)
                            continue
                    if seen is None:  # nothing changed in time
                        if kopf_patch is not None and held:
                            _merge_into(kopf_patch.setdefault("status", {}), held)
                            held = {}
                            _remember_handed(state, known, kopf_patch, retry)
                        return Requeue(0.0, "continue following")
                    obs = seen
                else:
                    state.akua_asked_at = time.monotonic()
                    obs = await self.perform(action, creds)
                if isinstance(obs, OperationObserved):
                    _count_operation(obs)
            if held and kopf_patch is not None:  # pragma: no cover - the bounds return first
                _merge_into(kopf_patch.setdefault("status", {}), held)
            return Requeue(0.0, "continue")

    # --- many teams (core/tenancy.py) -------------------------------------------------------

    async def _tenancy(
        self, facts: Facts, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    ) -> Facts:
        """Set ``default_credentials_permitted`` and ``claimed_by`` (claiming the cluster id
        when nobody holds it) before the core decides anything."""
        if not tenancy.names_secret(facts):
            permitted = await self._permitted(facts.meta.namespace, logger)
            facts = replace(facts, default_credentials_permitted=permitted)
        if tenancy.credentials_refused(facts, facts.status):
            return facts  # it may not act: it claims nothing either
        if facts.meta.deleting and (orphan_asked(facts) or facts.crd_deleting):
            return facts  # released without any Akua call whoever owns the cluster
        cluster_id = cluster_id_of(facts, facts.status)
        if cluster_id:
            facts = replace(facts, claimed_by=await self._claim(facts, cluster_id, logger))
        return facts

    async def _permitted(
        self, namespace: str, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    ) -> bool:
        labels: dict[str, str] | None = None
        if self.scope.selector is not None and not self.scope.permits(namespace, None):
            cached = self._labels.get(namespace)
            if cached is not None and time.monotonic() - cached[0] < LABELS_TTL:
                labels = cached[1]
            else:
                try:
                    labels = await self.kube.namespace_labels(namespace)
                except Exception as exc:  # noqa: BLE001 - unreadable: not permitted
                    logger.warning(
                        "cannot read the labels of namespace %s (%s): its AkuaClusters may "
                        "not use the default credentials",
                        namespace,
                        type(exc).__name__,
                    )
                self._labels[namespace] = (time.monotonic(), labels)
        return self.scope.permits(namespace, labels)

    async def _claim(
        self,
        facts: Facts,
        cluster_id: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> str | None:
        """The owner of ``cluster_id`` when another resource holds its claim, else None."""
        if self._claims is None:
            if not self._no_claims_logged:
                self._no_claims_logged = True
                logger.warning(
                    "no operator namespace (--operator-namespace / AKUA_OPERATOR_NAMESPACE): "
                    "cluster claims are not recorded, so two AkuaClusters may claim one cluster"
                )
            return None
        me = Claimant(facts.meta.namespace, facts.meta.name, facts.meta.uid)
        try:
            return await self._claims.claim(cluster_id, me)
        except Exception as exc:
            # No Akua call without the claim: the handler fails and kopf retries it.
            logger.warning(
                "cannot claim Akua cluster %s in namespace %s (%s %s): no Akua call until it "
                "can; the operator needs get/create/update/delete on leases there",
                cluster_id,
                self._claims.namespace,
                type(exc).__name__,
                getattr(exc, "status", "") or "",
            )
            raise

    async def _release_claim(
        self,
        facts: Facts,
        action: Release,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        """A deletion released by its owner frees the claim (best effort: a claim left behind
        passes on anyway once its holder is gone)."""
        if not facts.meta.deleting or self._claims is None or facts.claimed_by is not None:
            return
        if action.cause in (tenancy.CAUSE_CLAIMED, tenancy.CAUSE_NOT_PERMITTED):
            return
        cluster_id = cluster_id_of(facts, facts.status)
        if not cluster_id:
            return
        me = Claimant(facts.meta.namespace, facts.meta.name, facts.meta.uid)
        try:
            await self._claims.release(cluster_id, me)
        except Exception as exc:  # noqa: BLE001 - the release goes on
            logger.warning(
                "could not free the claim on Akua cluster %s (%s); it passes on once this "
                "resource is gone",
                cluster_id,
                type(exc).__name__,
            )

    # --- guards against mass deletion ---------------------------------------------------------

    def _apply_budget(
        self,
        facts: Facts,
        decision: Decision,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> Decision:
        """A budgeted DELETE the deletion budget refuses: decide again from the same facts
        (the status before that decision; its patch is never written) with DeleteDeferred.
        ``try_take`` is synchronous: nothing else runs between the check and the take."""
        action = decision.action
        if not (isinstance(action, DeleteCluster) and action.budgeted and self.budget.enabled):
            return decision
        if self.budget.try_take():
            return decision
        retry_in = self.budget.retry_in()
        logger.info(
            "deletion budget (%d per minute) exhausted: the delete of Akua cluster %s waits "
            "(next slot in %.0fs)",
            self.budget.per_minute,
            action.cluster_id,
            retry_in,
        )
        try:
            telemetry.current().metrics.deletion_deferred_inc()
        except Exception:  # metrics never break reconciliation
            log.debug("telemetry failed", exc_info=True)
        return decide(facts, DeleteDeferred(self.budget.per_minute, retry_in))

    async def _crd_deleting(
        self, seen_at: float, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    ) -> bool:
        """Whether the AkuaCluster CRD is being deleted, from a read sent after ``seen_at`` (when
        this process first saw the resource's deletionTimestamp): the API server sets the CRD's
        deletionTimestamp before it deletes the AkuaClusters, so such a read cannot miss a CRD
        deletion that caused this one. A read is shared by every resource it qualifies for
        (sent after their deletion was seen, at most CRD_READ_TTL old); concurrent cycles wait
        for one read instead of each sending their own.

        403/404: treated as not deleting (the guard cannot work without the read; logged once
        at WARNING). Any other failure raises: the deletion holds and is retried.
        """
        async with self._crd_lock:
            cached = self._crd_read
            if cached is not None:
                sent_at, deleting = cached
                if sent_at > seen_at and time.monotonic() - sent_at < CRD_READ_TTL:
                    return deleting
            sent_at = time.monotonic()
            try:
                deleting = await self.kube.crd_deleting(CRD_NAME)
            except CRDUnreadable as exc:
                if not self._crd_unreadable_logged:
                    self._crd_unreadable_logged = True
                    logger.warning(
                        "%s: the CRD guard is OFF (a deleted CRD would delete every Akua "
                        "cluster); grant `get` on customresourcedefinitions/%s",
                        exc,
                        CRD_NAME,
                    )
                deleting = False
            self._crd_read = (sent_at, deleting)
            return deleting

    async def _released_by_crd_guard(
        self,
        ref: ObjectRef,
        facts: Facts,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        """Record a release by the CRD guard: a WARNING log line, the metric, and (when the
        operator namespace is known) a key in the released-clusters ConfigMap. The record is
        best effort: it is tried twice, then logged at ERROR with its content; the release
        goes on either way (holding would keep the CRD deletion stuck, and the Akua cluster is
        not deleted whatever happens here)."""
        record = released_record(facts, facts.status)
        record["releasedAt"] = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
        cluster_id = record.get("clusterId")
        text = json.dumps(record, sort_keys=True)
        logger.warning(
            "ReleasedByCRDDeletion: %s/%s released without deleting: Akua cluster %s was NOT "
            "deleted %s",
            ref.namespace,
            ref.name,
            cluster_id or "(none recorded)",
            text,
        )
        try:
            telemetry.current().metrics.released_by_crd_deletion_inc()
        except Exception:  # metrics never break reconciliation
            log.debug("telemetry failed", exc_info=True)
        namespace = self.settings.operator_namespace
        if not namespace:
            if not self._no_namespace_logged:
                self._no_namespace_logged = True
                logger.warning(
                    "no operator namespace (--operator-namespace / AKUA_OPERATOR_NAMESPACE): "
                    "clusters released by CRD deletion are recorded in logs and Events only"
                )
            return
        name = self.settings.released_configmap
        key = released_key(ref)
        failure = ""
        for _ in range(RECORD_ATTEMPTS):
            try:
                await self.kube.record_released(namespace, name, key, text)
            except Exception as exc:  # noqa: BLE001 - a record never blocks the release
                failure = f"{type(exc).__name__} {getattr(exc, 'status', '') or ''}".strip()
            else:
                return
        logger.error(
            "could not record the release of %s/%s in ConfigMap %s/%s (%s); the record is "
            "only in this log and the Events: %s",
            ref.namespace,
            ref.name,
            namespace,
            name,
            failure,
            text,
        )

    async def _with_steps(self, op: Operation, creds: Credentials) -> Operation:
        """``op`` with its steps: the contract does not promise them in ``:wait``'s answer (or
        a mutation's), and an answer without them says nothing about them (a FAILED operation
        whose failed step is unknown is not "no retryable step"); ``GET /operations/{id}``
        is read for them then. A 404 there keeps the answer as it was."""
        if op.steps_reported:
            return op
        try:
            return await self.client.get_operation(op.id, creds=creds)
        except AkuaNotFound:
            return op

    async def _token_workspace(self, creds: Credentials) -> str | None:
        """The one workspace ``creds`` act in without akua-context (GET /workspaces), or None
        when they reach several or the call failed (the attempt then names none, as before)."""
        if creds.context is not None:
            return creds.context
        try:
            page = await self.client.list_workspaces(creds=creds, limit=2)
        except AkuaError as exc:
            log.debug("GET /workspaces failed: %s", type(exc).__name__)
            return None
        return page.data[0].id if len(page.data) == 1 and not page.has_more else None

    def _start_following(
        self,
        action: FollowOperation,
        creds: Credentials,
        state: ResourceState,
        seed: Operation | None,
    ) -> OperationTracker | None:
        """The tracker that follows ``action``'s operation for this resource (registered with
        ``seed``, the latest answer about it, when it is new), or None for a workspace id that
        cannot be sent."""
        workspace = action.workspace
        if workspace is not None and workspace != creds.context:
            try:
                creds = replace(creds, context=workspace)
            except ValueError:
                return None
        tracker = self.trackers.get(creds)
        op_id = action.operation_id
        if state.following != (tracker, op_id):
            _unfollow(state)
            tracker.follow(op_id, seed=seed if seed is not None and seed.id == op_id else None)
            state.following, state.followed_version = (tracker, op_id), 0
        return tracker

    async def _follow(
        self,
        action: FollowOperation,
        creds: Credentials,
        state: ResourceState,
        timeout: float,  # noqa: ASYNC109 - bounded by the run's follow budget
        seed: Operation | None,
    ) -> Observation | None:
        """Follow ``action``'s operation through the tracker of ``creds`` (in the workspace
        the core chose): its next change after the version the core last decided on (what
        is known now for ``wait=False``), or None when nothing changed within ``timeout``. A
        call about it that failed for good (401/403/404) comes back as that failure."""
        tracker = self._start_following(action, creds, state, seed)
        if tracker is None:
            return ApiFailed(AkuaResponseError("the workspace id is not valid"), action)
        op_id = action.operation_id
        seen = state.followed_version if action.wait else 0
        found, version = await tracker.changed(op_id, seen, max(0.0, timeout))
        if found is None or (action.wait and version == seen):
            return None
        state.followed_version = version
        if isinstance(found, AkuaError):
            return ApiFailed(found, action)
        return OperationObserved(found)

    async def perform(self, action: Action, creds: Credentials) -> Observation:
        """One Akua call; every outcome becomes an observation (nothing raises).

        The call names the workspace the core chose (``action.workspace``, sent as
        ``akua-context`` instead of the credentials' own): a 404 is reported with the workspace
        it was asked in, so the core can tell whether it proves anything.
        """
        workspace = getattr(action, "workspace", None)
        if workspace is not None and workspace != creds.context:
            try:
                creds = replace(creds, context=workspace)
            except ValueError:  # not 1-53 characters: never recorded from a valid answer
                return ApiFailed(AkuaResponseError("the workspace id is not valid"), action)
        try:
            match action:
                case ObserveCluster(cluster_id=cluster_id):
                    try:
                        return ClusterObserved(
                            await self.client.get_cluster(cluster_id, creds=creds)
                        )
                    except AkuaNotFound:
                        return ClusterGone(cluster_id, via="GET", workspace=creds.context)
                case FollowOperation(operation_id=op_id, wait=wait):
                    # through the tracker, as the cycle does: the next change (wait) or what
                    # is known now, within about one wait timeout
                    tracker = self.trackers.get(creds)
                    tracker.follow(op_id)
                    try:
                        after = tracker.version(op_id) if wait else 0
                        found, _ = await tracker.changed(
                            op_id, after, float(self.tuning.wait_timeout)
                        )
                        if found is None:
                            found, _ = await tracker.changed(op_id, 0, self.settings.api_timeout)
                    finally:
                        tracker.unfollow(op_id)
                    if isinstance(found, AkuaError):
                        raise found
                    if found is None:
                        raise AkuaTimeout(f"no answer about operation {op_id} yet")
                    return OperationObserved(found)
                case DeleteCluster(cluster_id=cluster_id, if_match=etag, idempotency_key=key):
                    try:
                        op = await self.client.delete_cluster(
                            cluster_id, creds=creds, if_match=etag, idempotency_key=key
                        )
                    except AkuaNotFound:
                        return ClusterGone(cluster_id, via="DELETE", workspace=creds.context)
                    if op.done:  # a replay of a finished operation: its outcome needs steps
                        op = await self._with_steps(op, creds)
                    return OperationObserved(op, accepted=True)
                case _ if isinstance(action, LIFECYCLE_ACTIONS):
                    # create, import, rename, suspend, resume: handlers/lifecycle.py
                    seen = await perform_lifecycle(self.client, self.kube, action, creds)
                    if isinstance(seen, OperationObserved) and seen.operation.done:
                        op = await self._with_steps(seen.operation, creds)
                        seen = OperationObserved(op, accepted=seen.accepted)
                    return seen
        except AkuaError as exc:
            return ApiFailed(exc, action)
        raise AssertionError(f"not an API action: {action!r}")  # pragma: no cover

    async def _credentials(
        self,
        facts: Facts,
        state: ResourceState,
        ref: ObjectRef,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> Credentials | CredentialsUnavailable:
        """The credentials for this cycle, read now (a corrected Secret is picked up).

        While deleting, a credentials Secret that no longer exists (404) is replaced by the
        last token read from it by this process, with one Warning Event saying so. Without such
        a copy (the operator restarted) the operator's own token is *not* used instead: the
        core stalls, and the message says how to get out (recreate the Secret, or orphan).
        """
        spec = facts.spec.credentials
        source = _secret_source(facts.meta.namespace, spec)
        try:
            creds = await self.kube.credentials(facts.meta.namespace, spec, self.token_source)
        except SecretNotFound as exc:
            if not facts.meta.deleting:
                return CredentialsUnavailable(str(exc))
            if state.credentials is not None and state.credentials_from == source:
                if not state.cached_credentials_announced:
                    state.cached_credentials_announced = True
                    event = Event(
                        EventType.WARNING,
                        REASON_CACHED_CREDENTIALS,
                        f"{exc}: deleting with the token this operator last read from it "
                        "(kept in memory only)",
                    )
                    logger.warning("%s: %s", event.reason, event.message)
                    await self.kube.emit_event(ref, event)
                return state.credentials
            return CredentialsUnavailable(
                f"{exc}, and this operator holds no copy of its token (it has restarted since "
                "it last read it; the operator's own credentials are not used instead): "
                "recreate the Secret, or set the annotation akua.dev/orphan=true to release "
                "the resource without deleting the Akua cluster"
            )
        except CredentialsError as exc:
            return CredentialsUnavailable(str(exc))
        if source is not None:
            state.credentials, state.credentials_from = creds, source
            state.cached_credentials_announced = False
        return creds

    # --- helpers ----------------------------------------------------------------------------

    def _facts(self, body: Mapping[str, Any], state: ResourceState, *, deleting: bool) -> Facts:
        metadata = body.get("metadata", {})
        status_raw = dict(body.get("status") or {})
        if state.handed is not None:
            # kopf handed us a body older than its own write of our last run's patch.
            status_raw = dict(state.handed)
        elif state.status is not None:
            if _older(metadata.get("resourceVersion"), state.resource_version):
                # kopf handed us a body older than our own last status write: trust our write.
                status_raw = dict(state.status)
            elif metadata.get("resourceVersion") is not None:
                # The watch has caught up with that write (kopf's later bodies are newer still):
                # the copy is no longer needed, and an idle resource keeps none.
                state.status = None
        try:
            spec = AkuaClusterSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            raise InvalidSpecError(str(exc)) from None
        unreadable: str | None = None
        try:
            status = AkuaClusterStatus.model_validate(status_raw)
        except ValidationError as exc:
            # Not silently a fresh status: the core holds (RecordsLost) instead of reading an
            # empty stand-in as "nothing happened". Only field paths, never values.
            unreadable = "; ".join(
                ".".join(str(p) for p in err["loc"]) + ": " + err["type"] for err in exc.errors()
            )[:300]
            log.warning("unreadable status of %s: %s", metadata.get("name"), unreadable)
            status = AkuaClusterStatus()
        return Facts(
            meta=Meta(
                uid=str(metadata.get("uid", "")),
                name=str(metadata.get("name", "")),
                namespace=str(metadata.get("namespace", "")),
                generation=int(metadata.get("generation") or 1),
                deleting=deleting or bool(metadata.get("deletionTimestamp")),
                annotations=dict(metadata.get("annotations") or {}),
            ),
            spec=spec,
            status=status,
            now=_now(),
            tuning=self.tuning,
            status_unreadable=unreadable,
        )

    async def _write_status(
        self,
        ref: ObjectRef,
        patch: dict[str, Any],
        state: ResourceState,
        known: Mapping[str, Any] | None = None,
    ) -> Mapping[str, Any] | None:
        """Write ``patch`` to the status, unless it changes nothing in ``known`` (the status as
        last read or written). Returns the status known after it (None: unknown)."""
        if known is not None and merge_apply(known, patch) == known:
            log.debug("status of %s/%s unchanged: not written", ref.namespace, ref.name)
            return known
        result = await self.kube.patch_status(ref.namespace, ref.name, patch)
        if not isinstance(result, Mapping):
            return None
        state.resource_version = result.get("metadata", {}).get("resourceVersion")
        state.status = dict(result.get("status") or {})
        return state.status

    def _shard_record(self, facts: Facts) -> dict[str, Any] | None:
        """The status patch recording this shard as the deletion's owner, if it is still to
        be written (sharded operators only)."""
        if not self.shards.sharded:
            return None
        if facts.status.deletion is not None and facts.status.deletion.shard:
            return None
        return {"deletion": {"shard": self.shards.label}}

    def _report(self, ref: ObjectRef, facts: Facts, action: Action) -> None:
        tel = telemetry.current()
        try:
            tel.record_resource(ref.namespace, ref.name, facts.status.conditions)
            if facts.meta.deleting and isinstance(action, Release):
                tel.finalizer_released(ref.uid)
                tel.forget_resource(ref.namespace, ref.name)
        except Exception:  # metrics never break reconciliation
            log.debug("telemetry failed", exc_info=True)


def released_key(ref: ObjectRef) -> str:
    """The released-clusters ConfigMap key of a resource: ``<namespace>.<name>.<uid>``
    (a namespace has no dots; the uid keeps a re-created namespace/name from overwriting an
    older record). ConfigMap keys allow ``[-._a-zA-Z0-9]``, at most 253 characters."""
    suffix = f".{ref.uid}"
    return f"{ref.namespace}.{ref.name}"[: 253 - len(suffix)] + suffix


def _known_status(body: Mapping[str, Any], state: ResourceState) -> Mapping[str, Any]:
    """The status as last read (the body) or written by this process, whichever is newer."""
    if state.handed is not None:
        return state.handed
    rv = (body.get("metadata") or {}).get("resourceVersion")
    if state.status is not None and _older(rv, state.resource_version):
        return state.status
    status = body.get("status")
    return status if isinstance(status, Mapping) else {}


def _resumes(facts: Facts, decision: Decision, action: FollowOperation) -> bool:
    """A run that starts from ``decision``'s status (no observation yet) follows the same
    operation: ending the run there loses nothing (a 409's "wait for the other operation" is
    followed within its run instead: a new run would send the DELETE again)."""
    after = replace(advance(facts, decision), now=facts.now)
    again = decide(after, None).action
    return isinstance(again, FollowOperation) and again.operation_id == action.operation_id


def _remember_handed(
    state: ResourceState,
    known: Mapping[str, Any] | None,
    kopf_patch: Mapping[str, Any],
    retry: int | None,
) -> None:
    """Remember the status kopf is about to write (see ResourceState.handed)."""
    if retry is None or known is None:
        state.handed = None
        return
    state.handed = merge_apply(known, kopf_patch.get("status") or {})
    state.handed.pop("kopf", None)
    state.handed_retry = retry + 1


def _forget_handed(state: ResourceState, retry: int | None) -> None:
    """Drop ``state.handed`` once a body carries kopf's write of it (its retry count)."""
    if state.handed is not None and (retry is None or retry >= state.handed_retry):
        state.handed = None


def merge_apply(target: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` with the JSON merge patch ``patch`` applied (RFC 7386); neither is changed."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            current = out.get(key)
            out[key] = merge_apply(current if isinstance(current, Mapping) else {}, value)
        else:
            out[key] = value
    return out


def _only_read_stamp(patch: Mapping[str, Any]) -> bool:
    """The patch changes only ``operation.lastReadAt`` (when Akua last answered)."""
    return set(patch) == {"operation"} and set(patch["operation"] or {}) == {"lastReadAt"}


def _merge_into(target: MutableMapping[str, Any], patch: Mapping[str, Any]) -> None:
    """Merge the JSON merge patch ``patch`` into the merge patch ``target`` (both stay patches:
    a ``None`` value still deletes the key)."""
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, MutableMapping):
            _merge_into(current, value)
        else:
            target[key] = copy.deepcopy(value)


def _unfollow(state: ResourceState) -> None:
    """Drop the resource's reference to the operation it followed (if any)."""
    if state.following is not None:
        tracker, op_id = state.following
        tracker.unfollow(op_id)
        state.following, state.followed_version = None, 0


def _deletion_seen_at(body: Mapping[str, Any], state: ResourceState) -> float:
    """When this process first saw this deletion of the resource (time.monotonic)."""
    metadata = body.get("metadata", {})
    key = (str(metadata.get("uid", "")), str(metadata.get("deletionTimestamp") or ""))
    if state.deletion_seen != key:
        state.deletion_seen = key
        state.deletion_seen_at = time.monotonic()
    return state.deletion_seen_at


def _count_operation(obs: OperationObserved) -> None:
    """``akua_operator_operations_total`` / ``akua_operator_operation_duration_seconds``
    (each operation once)."""
    try:
        telemetry.current().observe_operation_done(obs.operation)
    except Exception:  # metrics never break reconciliation
        log.debug("telemetry failed", exc_info=True)


def _secret_source(
    namespace: str, spec: CredentialsSpec | None
) -> tuple[str, str, str, str | None] | None:
    """Which Secret (and workspace) the credentials come from; None: the operator's own."""
    if spec is None or spec.secret_ref is None:
        return None
    return (namespace, spec.secret_ref.name, spec.secret_ref.key, spec.workspace_id)


class InvalidSpecError(Exception):
    """The spec does not parse (the CRD schema should have prevented it)."""


def _now() -> datetime:
    return datetime.now(tz=UTC)


def _older(current: Any, written: str | None) -> bool:
    if written is None or current is None:
        return False
    try:
        return int(current) < int(written)
    except (TypeError, ValueError):
        return False


def _kubernetes_api_client() -> Any:
    """KUBECONFIG when set, else the in-cluster service account, else ~/.kube/config."""
    import os

    from kubernetes import client, config

    if not os.environ.get("KUBECONFIG"):
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            pass
    return config.new_client_from_config()  # type: ignore[no-untyped-call]
