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

Guards against mass deletion (core/guards.py): while deleting, the runtime reads the AkuaCluster
CRD (``Facts.crd_deleting``) and records releases by the CRD guard (log, metric, ConfigMap); a
budgeted DELETE that the process's deletion budget (handlers/budget.py) refuses is never
performed: the core decides again from the same facts with ``DeleteDeferred``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from akua_operator import telemetry
from akua_operator.akua.client import AkuaClient, ClientConfig, Credentials
from akua_operator.akua.errors import AkuaError, AkuaNotFound, AkuaResponseError
from akua_operator.core import Decision, Facts, Meta, Tuning, advance, decide
from akua_operator.core.guards import CAUSE_CRD_GUARD, crd_read_needed, released_record
from akua_operator.core.lifecycle import token_workspace_needed
from akua_operator.core.lifecycle_actions import LIFECYCLE_ACTIONS
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
from akua_operator.kube import (
    CRDUnreadable,
    CredentialsError,
    KubeIO,
    ObjectRef,
    SecretNotFound,
    TokenSource,
)
from akua_operator.resource.models import (
    CRD_NAME,
    AkuaClusterSpec,
    AkuaClusterStatus,
    CredentialsSpec,
)
from akua_operator.settings import Settings

log = logging.getLogger("akua_operator")

# Bounds of one cycle: at most this many Akua calls, at most this many :wait long polls.
MAX_ACTIONS = 8
MAX_WAITS = 2

REASON_CACHED_CREDENTIALS = "CachedCredentials"

#: A read of the AkuaCluster CRD is reused for this long (and only by resources whose deletion
#: this process saw before the read was sent: see Runtime._crd_deleting).
CRD_READ_TTL = 5.0
#: Attempts to write one record into the released-clusters ConfigMap (one retry).
RECORD_ATTEMPTS = 2


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
    )


@dataclass
class ResourceState:
    """Per-resource memory (kept in kopf's per-object memo)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    resource_version: str | None = None  # of our last status write
    status: dict[str, Any] | None = None  # the status as we last wrote it
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


class Runtime:
    """Process-wide: the Akua client, Kubernetes I/O, settings."""

    def __init__(
        self,
        settings: Settings,
        *,
        token_source: TokenSource | None = None,
        kube: KubeIO | None = None,
        client: AkuaClient | None = None,
    ) -> None:
        self.settings = settings
        self.tuning = tuning_from(settings)
        self.token_source = token_source or TokenSource.from_env()
        self._kube = kube
        self._client = client
        self.budget = DeletionBudget(settings.deletion_budget_per_minute)
        # The last read of the AkuaCluster CRD: (time.monotonic() when sent, deleting).
        self._crd_read: tuple[float, bool] | None = None
        self._crd_lock = asyncio.Lock()
        self._crd_unreadable_logged = False
        self._no_namespace_logged = False

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
        if self._client is None:
            s = self.settings
            self._client = AkuaClient(
                ClientConfig(
                    base_url=s.api_url,
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
        """Close the shared clients (kopf cleanup)."""
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
    ) -> Action:
        """Run decide/apply/perform until the core says Release, Requeue or Idle.

        ``observe_only`` (every handler but the delete handler): when the resource is being
        deleted (``metadata.deletionTimestamp`` in the live body, which may have appeared while
        this call waited for the per-resource lock) return ``Idle`` without deciding anything.
        Only the delete handler runs the deletion flow, so its Events, status writes and the
        ``finalizer_released`` metric happen once.
        """
        async with state.lock:
            facts = self._facts(body, state, deleting=deleting)
            if observe_only and facts.meta.deleting:
                return Idle("being deleted: the delete handler owns the resource")
            ref = ObjectRef(facts.meta.namespace, facts.meta.name, facts.meta.uid)
            if crd_read_needed(facts):
                seen_at = _deletion_seen_at(body, state)
                facts = replace(facts, crd_deleting=await self._crd_deleting(seen_at, logger))
            obs: Observation = None
            creds: Credentials | None = None
            if token_workspace_needed(facts):
                # a new create/import attempt records the workspace it goes to (core/lifecycle)
                found = await self._credentials(facts, state, ref, logger)
                if not isinstance(found, CredentialsUnavailable):
                    creds = found
                    facts = replace(facts, token_workspace=await self._token_workspace(creds))
            waits = 0
            # MAX_ACTIONS calls at most, and the core decides on the answer to each of them
            # (the last included): an answer never decided on would leave its request
            # recorded as pending, and the next run would send it again.
            for calls in range(MAX_ACTIONS + 1):
                decision = decide(facts, obs)
                decision = self._apply_budget(facts, decision, logger)
                if decision.status_patch is not None:
                    await self._write_status(ref, decision.status_patch, state)
                for event in decision.events:
                    logger.info("%s: %s", event.reason, event.message)
                    await self.kube.emit_event(ref, event)
                facts = replace(advance(facts, decision), now=_now())
                action = decision.action
                self._report(ref, facts, action)
                if isinstance(action, Release) and action.cause == CAUSE_CRD_GUARD:
                    await self._released_by_crd_guard(ref, facts, logger)
                if isinstance(action, Release | Requeue | Idle):
                    return action
                if calls == MAX_ACTIONS:
                    break  # the next run starts from this decision (its intent is recorded)
                if isinstance(action, FollowOperation) and action.wait:
                    if waits >= MAX_WAITS:
                        return Requeue(0.0, "continue following")
                    waits += 1
                if creds is None:
                    found = await self._credentials(facts, state, ref, logger)
                    if isinstance(found, CredentialsUnavailable):
                        obs = found
                        continue
                    creds = found
                obs = await self.perform(action, creds)
                if isinstance(obs, OperationObserved):
                    _count_operation(obs)
            return Requeue(0.0, "continue")

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
                case FollowOperation(operation_id=op_id, wait=True):
                    op = await self.client.wait_operation(
                        op_id, creds=creds, timeout=self.tuning.wait_timeout
                    )
                    return OperationObserved(op)
                case FollowOperation(operation_id=op_id):
                    return OperationObserved(await self.client.get_operation(op_id, creds=creds))
                case DeleteCluster(cluster_id=cluster_id, if_match=etag, idempotency_key=key):
                    try:
                        op = await self.client.delete_cluster(
                            cluster_id, creds=creds, if_match=etag, idempotency_key=key
                        )
                    except AkuaNotFound:
                        return ClusterGone(cluster_id, via="DELETE", workspace=creds.context)
                    return OperationObserved(op, accepted=True)
                case _ if isinstance(action, LIFECYCLE_ACTIONS):
                    # create, import, rename, suspend, resume: handlers/lifecycle.py
                    return await perform_lifecycle(self.client, self.kube, action, creds)
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
        if state.status is not None and _older(
            metadata.get("resourceVersion"), state.resource_version
        ):
            # kopf handed us a body older than our own last status write: trust our write.
            status_raw = dict(state.status)
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
        self, ref: ObjectRef, patch: dict[str, Any], state: ResourceState
    ) -> None:
        result = await self.kube.patch_status(ref.namespace, ref.name, patch)
        if isinstance(result, Mapping):
            state.resource_version = result.get("metadata", {}).get("resourceVersion")
            state.status = dict(result.get("status") or {})

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


def _deletion_seen_at(body: Mapping[str, Any], state: ResourceState) -> float:
    """When this process first saw this deletion of the resource (time.monotonic)."""
    metadata = body.get("metadata", {})
    key = (str(metadata.get("uid", "")), str(metadata.get("deletionTimestamp") or ""))
    if state.deletion_seen != key:
        state.deletion_seen = key
        state.deletion_seen_at = time.monotonic()
    return state.deletion_seen_at


def _count_operation(obs: OperationObserved) -> None:
    """``akua_operations_total`` / ``akua_operation_duration_seconds`` (each operation once)."""
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
