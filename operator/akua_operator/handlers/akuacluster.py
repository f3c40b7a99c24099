"""The kopf handlers of AkuaCluster: thin wrappers around :meth:`Runtime.cycle`.

- ``on.startup``: kopf settings (our finalizer, storage prefixes) and the shared clients.
- ``on.create`` / ``on.resume`` / ``on.update``: observe (the lifecycle work extends the core,
  not these handlers). Create and resume take the cluster from the next list sweep
  (handlers/observer.py: one ``GET /clusters`` page per 100 resources instead of a GET each).
- The periodic observation is no kopf timer: one ``ClusterSweeper`` per credentials key pages
  ``GET /clusters`` every ``--observe-interval`` and runs a cycle only for what changed.
- ``on.delete``: the deletion flow. It never fails permanently (no ``timeout=``/``retries=``,
  every exception becomes a TemporaryError); returning from it releases the finalizer, and it
  returns only when the core decided ``Release``. The release's final status goes into kopf's
  ``patch`` (handlers/runtime.py), so kopf's finalizer patch never tests a stale version.

Re-runs: a handler that must come back raises ``ComeBack(delay)``. kopf then writes its progress
record (in ``status.kopf``, together with the status the run handed to kopf: one ``/status``
PATCH) and re-runs the handler when that write's event arrives, but only if the delay has
passed: with a delay > 0 the event usually comes first, kopf sleeps out the rest and writes a
second time (its touch-dummy, ``status.kopf.dummy``) to wake itself. So a run that only needs to
go on (``Requeue(0)``: an operation is still being followed) comes back with delay 0, one write,
unless it lasted less than ``MIN_RUN_SECONDS`` (then it waits out the rest: never a spin). A
delete run that ends on a change an Akua answer brought (``RERUN_SHOWN``) always comes back at
once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kopf._core.actions.execution import HandlerChildrenRetry  # a TemporaryError

from akua_operator import telemetry
from akua_operator.core.deletion import orphan_requested
from akua_operator.core.shards import Shards
from akua_operator.core.types import Action, ClusterObserved, Idle, Release, Requeue
from akua_operator.handlers.observer import Observer
from akua_operator.handlers.runtime import (
    RERUN_SHOWN,
    InvalidSpecError,
    ResourceState,
    Runtime,
)
from akua_operator.resource.models import (
    GROUP,
    KOPF_STORAGE_PREFIX,
    PLURAL,
    VERSION,
)
from akua_operator.settings import Settings

log = logging.getLogger("akua_operator")

STORAGE_PREFIX = KOPF_STORAGE_PREFIX  # the core reads ANNOTATION_LAST_HANDLED under it
INTERNAL_ERROR_DELAY = 10.0
#: A handler run that ends with Requeue(0) in less than this comes back only after the rest.
MIN_RUN_SECONDS = 1.0


class ComeBack(HandlerChildrenRetry):
    """Re-run the handler after ``delay`` seconds (a kopf TemporaryError, logged at DEBUG only,
    not as an error on every poll of a running operation)."""


#: Where kopf keeps its progress records: in status, so that a record written when a run ends
#: shares the one ``/status`` PATCH with the status the run hands to kopf (handlers/runtime.py).
PROGRESS_FIELD = "status.kopf.progress"
TOUCH_FIELD = "status.kopf.dummy"


class LegacyProgressStorage(kopf.AnnotationsProgressStorage):
    """The progress annotations of earlier versions (``operator.akua.dev/<handler>``): read, so
    a deletion or lifecycle run that was under way at an upgrade goes on where it was, and
    purged as kopf purges them; never written again."""

    def store(self, **_: Any) -> None:
        pass

    def touch(self, **_: Any) -> None:
        pass


def progress_storage() -> kopf.MultiProgressStorage:
    """kopf's progress records in ``status.kopf`` (the CRD declares it, with unknown fields kept:
    pruned, a record would never be stored and kopf would never run the handler again), the
    earlier annotations read and purged.

    Why status: every run that comes back (``ComeBack``) makes kopf store its record. In an
    annotation that is a merge PATCH of the object, in addition to the ``/status`` PATCH of the
    status the run ends with; in status, both are one PATCH (kopf sends a patch's ``status``
    part as one merge PATCH of ``/status``). At the release, the record's purge rides in the
    same PATCH as the final status."""
    return kopf.MultiProgressStorage(
        [
            kopf.StatusProgressStorage(field=PROGRESS_FIELD, touch_field=TOUCH_FIELD),
            LegacyProgressStorage(prefix=STORAGE_PREFIX),
        ]
    )


def _state(memo: Any) -> ResourceState:
    state = memo.get("akua_state")
    if not isinstance(state, ResourceState):
        state = ResourceState()
        memo["akua_state"] = state
    return state


def _runtime(memo: Any) -> Runtime:
    runtime = memo.get("runtime")
    if not isinstance(runtime, Runtime):
        raise kopf.PermanentError("the operator was started without a Runtime in its memo")
    return runtime


def _min_delay(delay: float) -> float:
    return max(0.1, delay)


def _rerun_delay(delay: float, started: float) -> float:
    """The ComeBack delay of a run that started at ``started`` (time.monotonic) and asks to come
    back after ``delay``: 0 (one kopf write) when nothing is to wait for and the run lasted at
    least MIN_RUN_SECONDS, else at least 0.1 s."""
    if delay > 0:
        return _min_delay(delay)
    elapsed = time.monotonic() - started
    return 0.0 if elapsed >= MIN_RUN_SECONDS else _min_delay(MIN_RUN_SECONDS - elapsed)


async def _run(
    body: Any,
    memo: Any,
    logger: Any,
    *,
    deleting: bool,
    kopf_patch: MutableMapping[str, Any] | None = None,
    seed: ClusterObserved | None = None,
    retry: int | None = None,
) -> Action:
    runtime = _runtime(memo)
    return await runtime.cycle(
        body,
        _state(memo),
        deleting=deleting,
        observe_only=not deleting,
        logger=logger,
        kopf_patch=kopf_patch,
        seed=seed,
        retry=retry,
    )


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """kopf's settings for this operator (applied by the startup handler, before kopf watches).

    Namespaced (``--namespace``), kopf must not scan the cluster: listing and watching
    Namespaces and CustomResourceDefinitions needs cluster-scope rights that a namespaced
    install does not have (every attempt would log a 403). With scanning disabled kopf serves
    exactly the given namespaces and the resources it finds at startup (AkuaCluster and kopf's
    peering kinds: their CRDs must exist before the operator starts, as the chart installs
    them). Cluster-wide, kopf still follows CRDs (it never lists Namespaces then).
    """
    kopf_settings.persistence.finalizer = Shards(settings.shard, settings.shard_names).finalizer
    kopf_settings.persistence.progress_storage = progress_storage()
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=STORAGE_PREFIX, key="last-handled-configuration"
    )
    kopf_settings.posting.level = logging.WARNING
    kopf_settings.scanning.disabled = not settings.all_namespaces


def shard_filter(runtime: Runtime) -> dict[str, Any]:
    """The kopf filter (``when=``) of every AkuaCluster handler: sharded, a shard handles only
    what :meth:`Shards.handles` gives it (core/shards.py). kopf adds this shard's finalizer to
    the objects it handles and removes it from the others (each shard has its own finalizer,
    so no shard ever touches another one's). Not sharded: no filter."""
    shards = runtime.shards
    if not shards.sharded:
        return {}

    def handled(body: Any, **_: Any) -> bool:
        return shards.handles(body)

    return {"when": handled}


def register(registry: Any, runtime: Runtime) -> Observer:
    """Register every handler on ``registry`` with timings from ``runtime.settings``; returns
    the observer (its ``on_event`` is the telemetry watch hook's listener, cli.py)."""
    observer = Observer(runtime)
    shard = shard_filter(runtime)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
        configure_kopf(settings, runtime.settings)
        memo["runtime"] = runtime
        await runtime.start()
        observer.start()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await observer.stop()
        await runtime.stop()

    async def observe(body: Any, memo: Any, logger: Any, *, listed: bool) -> None:
        started = time.monotonic()
        try:
            seed = None
            if listed:
                observer.note(body, _state(memo))
                seed = await observer.lookup(body)
            action = await _run(body, memo, logger, deleting=False, seed=seed)
        except InvalidSpecError as exc:
            raise kopf.PermanentError(f"invalid spec: {exc}") from None
        except Exception as exc:
            logger.exception("reconcile failed")
            telemetry.current().handler_error("observe")
            raise kopf.TemporaryError(
                f"internal error: {type(exc).__name__}", delay=INTERNAL_ERROR_DELAY
            ) from None
        if isinstance(action, Requeue):
            raise ComeBack(action.reason or "retry", delay=_rerun_delay(action.delay, started))
        if isinstance(action, Release):  # pragma: no cover - only while deleting
            return

    async def observe_listed(body: Any, memo: Any, logger: Any, retry: int, **_: Any) -> None:
        # The first run takes the cluster from a list sweep; a re-run (ComeBack) reads it.
        await observe(body, memo, logger, listed=retry == 0)

    async def observe_now(body: Any, memo: Any, logger: Any, **_: Any) -> None:
        await observe(body, memo, logger, listed=False)

    kopf.on.create(GROUP, VERSION, PLURAL, id="observe-create", registry=registry, **shard)(
        observe_listed
    )
    kopf.on.resume(GROUP, VERSION, PLURAL, id="observe-resume", registry=registry, **shard)(
        observe_listed
    )
    kopf.on.update(GROUP, VERSION, PLURAL, id="observe-update", registry=registry, **shard)(
        observe_now
    )

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="delete", registry=registry, **shard)
    async def delete(
        body: Any, memo: Any, logger: Any, patch: Any, retry: int = 0, **_: Any
    ) -> None:
        started = time.monotonic()
        try:
            action = await _run(body, memo, logger, deleting=True, kopf_patch=patch, retry=retry)
        except InvalidSpecError as exc:
            # The core cannot decide without a spec; the escape hatch still works.
            if orphan_requested(dict(body.get("metadata", {}).get("annotations") or {})):
                logger.warning("invalid spec, released by akua.dev/orphan: %s", exc)
                # A status write of kopf's own refreshes the version its finalizer patch tests.
                stamp = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                patch.setdefault("status", {}).setdefault("deletion", {})["releasedAt"] = stamp
                return
            logger.warning("invalid spec; set akua.dev/orphan=true to release: %s", exc)
            raise kopf.TemporaryError("invalid spec", delay=INTERNAL_ERROR_DELAY) from None
        except Exception as exc:
            # Never a permanent failure: that would release the finalizer and orphan the cluster.
            logger.exception("deletion cycle failed; keeping the finalizer")
            telemetry.current().handler_error("delete")
            raise kopf.TemporaryError(
                f"internal error: {type(exc).__name__}", delay=INTERNAL_ERROR_DELAY
            ) from None
        if isinstance(action, Release):
            logger.info("releasing the finalizer: %s", action.reason)
            return
        if isinstance(action, Idle):  # pragma: no cover - the deletion flow never idles
            raise ComeBack("idle", delay=INTERNAL_ERROR_DELAY)
        delay = action.delay if isinstance(action, Requeue) else 0.0
        reason = action.reason if isinstance(action, Requeue) else "continue"
        if reason == RERUN_SHOWN:
            # The run ended on a change an Akua answer brought: kopf writes it with its record
            # and runs the handler again on that write's event. No delay: one write, no touch.
            raise ComeBack(reason, delay=0.0)
        raise ComeBack(reason or "continue", delay=_rerun_delay(delay, started))

    return observer
