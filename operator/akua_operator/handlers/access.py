"""The access guard of a namespaced install (``--access-guard NAME``; the chart sets it).

In each watched namespace the operator's rights come from a RoleBinding named NAME (to a
ClusterRole), and (with peering) it coordinates through the KopfPeering named by
``--peering-name``. They live in that namespace, so ``kubectl delete namespace`` deletes them
together with the AkuaClusters that wait on the operator. While AkuaClusters there carry the
operator's finalizer, the guard keeps :data:`~akua_operator.core.access.ACCESS_FINALIZER` on those
objects, and takes it off once the last one is released, the RoleBinding last: after that the
operator may do nothing more there (the decision is :func:`~akua_operator.core.access.access_step`).

A background task looks at every watched namespace every :data:`INTERVAL` seconds, and sooner when
an AkuaCluster event says something changed (a finalizer held in a namespace not yet guarded, an
AkuaCluster gone). Every replica runs it (a peering standby too): each round reads the truth from
the API server and writes with a resourceVersion precondition, so replicas never undo each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from akua_operator.core.access import ACCESS_FINALIZER, AccessStep, access_step
from akua_operator.core.shards import holds_operator_finalizer
from akua_operator.handlers.runtime import Runtime
from akua_operator.kube.access import AccessIO, AccessObject
from akua_operator.resource.models import GROUP, PLURAL, VERSION

log = logging.getLogger("akua_operator.access")

INTERVAL = 5.0  # seconds between rounds when nothing wakes the guard
MIN_GAP = 0.5  # seconds between two rounds at the least
LAST_ROUND = 5.0  # seconds the round on shutdown may take


class AccessGuard:
    def __init__(self, namespaces: tuple[str, ...], objects: tuple[AccessObject, ...]) -> None:
        self.namespaces = namespaces
        self.objects = objects
        self._guarded: dict[str, bool] = {}
        self._problem: dict[str, str] = {}
        self._holding: set[tuple[str, AccessObject]] = set()
        self._wake = asyncio.Event()

    def poke(self, namespace: str, *, holds: bool, gone: bool) -> None:
        """An AkuaCluster event in ``namespace``: wake the guard when it may have work."""
        if namespace not in self.namespaces:
            return
        if gone or (holds and not self._guarded.get(namespace)):
            self._wake.set()

    async def run(self, runtime: Runtime) -> None:
        io: AccessIO | None = None
        while True:
            self._wake.clear()
            try:
                io = io or AccessIO(runtime.kube.api_client)
            except RuntimeError:  # the runtime is not started yet
                io = None
            if io is not None:
                for namespace in self.namespaces:
                    try:
                        await self.reconcile(io, namespace)
                    except Exception:  # a bug must not end the guard for good
                        log.exception("access guard: round failed in %s", namespace)
            await asyncio.sleep(MIN_GAP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), INTERVAL - MIN_GAP)

    async def last_round(self, runtime: Runtime) -> None:
        """One more round on shutdown: an operator stopped just after its last AkuaCluster was
        released must not leave the finalizer behind (``helm uninstall`` would then hang on the
        RoleBinding). Nothing is released while AkuaClusters still hold the operator's."""
        try:
            io = AccessIO(runtime.kube.api_client)
        except RuntimeError:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LAST_ROUND):
                for namespace in self.namespaces:
                    await self.reconcile(io, namespace)

    async def reconcile(self, io: AccessIO, namespace: str) -> None:
        try:
            held = await asyncio.to_thread(io.held_sync, namespace)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            self._report(namespace, f"cannot list AkuaClusters: {_why(exc)}")
            return
        terminating: bool | None = None
        looked = False
        done = True  # every object read so far is as it should be (guarded while held)
        # Guard the RoleBinding first; release it last, and only once the others are released:
        # after that the operator may not touch anything in the namespace.
        objects = self.objects if held else tuple(reversed(self.objects))
        for obj in objects:
            if not held and obj is self.objects[0] and not done:
                break
            try:
                meta = await asyncio.to_thread(io.read_sync, namespace, obj)
            except Exception as exc:  # noqa: BLE001
                self._report(namespace, f"cannot read {obj}: {_why(exc)}")
                done = False
                continue
            if meta is None:
                continue  # not there: nothing to guard or release
            finalizers = list(meta.get("finalizers") or [])
            guarded = ACCESS_FINALIZER in finalizers
            deleting = bool(meta.get("deletionTimestamp"))
            if guarded and held and deleting and not looked:
                terminating = await asyncio.to_thread(io.namespace_terminating_sync, namespace)
                looked = True
            step = access_step(
                held=held, guarded=guarded, deleting=deleting, namespace_terminating=terminating
            )
            key = (namespace, obj)
            if step is AccessStep.KEEP:
                if guarded and deleting and key not in self._holding:
                    self._holding.add(key)
                    log.info(
                        "access guard: keeping %s in namespace %s (being deleted) until the "
                        "AkuaClusters there are released",
                        obj,
                        namespace,
                    )
                continue
            if step is AccessStep.ADD:
                new = [*finalizers, ACCESS_FINALIZER]
                what = "AkuaClusters need the operator here: added"
            else:
                new = [f for f in finalizers if f != ACCESS_FINALIZER]
                what = "removed" if held else "no AkuaCluster needs the operator here: removed"
            try:
                await asyncio.to_thread(
                    io.set_finalizers_sync, namespace, obj, str(meta.get("resourceVersion")), new
                )
            except Exception as exc:  # noqa: BLE001 - a conflict or a race: decide again
                log.info("access guard: %s in %s changed meanwhile: %s", obj, namespace, _why(exc))
                done = False
                self._wake.set()
                continue
            self._holding.discard(key)
            log.info("access guard: %s %s on %s in namespace %s", what, ACCESS_FINALIZER, obj,
                     namespace)  # fmt: skip
        self._guarded[namespace] = held and done
        if done:
            self._problem.pop(namespace, None)

    def _report(self, namespace: str, problem: str) -> None:
        """Log a problem once, not on every round (e.g. a namespace deleted while watched)."""
        if self._problem.get(namespace) != problem:
            self._problem[namespace] = problem
            log.warning("access guard: namespace %s: %s", namespace, problem)


def _why(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    return f"HTTP {status} {reason}" if status else type(exc).__name__


def register(registry: Any, runtime: Runtime) -> None:
    """Register the guard when the settings ask for it (a namespaced install with
    ``--access-guard``); cluster-wide the operator's RBAC lives outside every namespace."""
    settings = runtime.settings
    name = getattr(settings, "access_guard", None)
    if not name or settings.all_namespaces or not settings.namespaces:
        return
    objects = [AccessObject("RoleBinding", name)]
    if not settings.standalone and settings.peering_name:
        objects.append(AccessObject("KopfPeering", settings.peering_name))
    guard = AccessGuard(tuple(settings.namespaces), tuple(objects))
    tasks: list[asyncio.Task[None]] = []

    @kopf.on.startup(registry=registry)
    async def start_access_guard(**_: Any) -> None:
        tasks.append(asyncio.create_task(guard.run(runtime), name="akua-access-guard"))

    @kopf.on.cleanup(registry=registry)
    async def stop_access_guard(**_: Any) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await guard.last_round(runtime)

    @kopf.on.event(GROUP, VERSION, PLURAL, id="access-guard", registry=registry)
    async def akuacluster_event(event: Any, **_: Any) -> None:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        guard.poke(
            str(meta.get("namespace", "")),
            holds=holds_operator_finalizer(meta.get("finalizers") or []),
            gone=event.get("type") == "DELETED",
        )
