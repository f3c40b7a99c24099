"""Routine observation: one paged ``GET /clusters`` sweep per credentials key.

A kopf timer per AkuaCluster (one task and one ``GET /clusters/{id}`` per object and interval,
holding the resource's lock while it waited for a token) is replaced by one
:class:`ClusterSweeper` per credentials key (the Secret the token comes from, or the operator's
own, and the workspace). The contract's ``GET /clusters`` pages (``limit`` 1-100, a cursor, no
ordering) carry every field of ``GET /clusters/{id}``, so one sweep observes 100 clusters a call.

- **When.** Every ``--observe-interval`` (the first sweep of a key spread by
  ``--observe-jitter``), and :data:`ASK_DEBOUNCE` seconds after the last create/resume handler
  asked (at most :data:`ASK_MAX_DELAY` after the first ask): 5000 resources resumed after a
  restart cost one sweep of 50 pages, not 5000 GETs. Pages go at ``Priority.OBSERVE``.
- **What.** Each item is compared with a compact index of the resources (:class:`Entry`, uid ->
  namespace, name, cluster id, credentials source, workspace, and what status last showed:
  etag, state, name, reconciling), fed by the telemetry watch hook (every watch event) and by
  the handlers. Unchanged: nothing. Changed: the object is read once from Kubernetes and
  :meth:`Runtime.cycle` runs on it under the resource's lock with the list item as its first
  observation (``seed``: the core decides on it instead of a GET). Absent from the list: a
  normal cycle (one ``GET /clusters/{id}``; a 404 proves "gone" only as the core rules).
  Resources being deleted or paused are skipped.
- **Follow-up.** When the core asks to come back (``Requeue``: a busy cluster, a rename or
  suspend/resume started by drift), the :class:`Follower` runs the cycle again after the delay.
  Its task exists only while there is work; it is not a kopf handler, so nothing sleeps in one.
- **Liveness.** Every sweeper iteration (a success, a handled failure, or nothing to sweep)
  ends with ``ProgressTracker.mark_sweep()``; the observer's own tick marks one when no key
  has a sweeper (no resource has a cluster), so an idle operator keeps marking progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from akua_operator import telemetry
from akua_operator.akua.budget import Priority
from akua_operator.akua.client import Credentials
from akua_operator.akua.errors import AkuaError, AkuaForbidden, AkuaUnauthorized
from akua_operator.akua.models import Cluster
from akua_operator.core.lifecycle import paused
from akua_operator.core.types import ClusterObserved, Requeue
from akua_operator.handlers.runtime import InvalidSpecError, ResourceState, Runtime
from akua_operator.kube import CredentialsError
from akua_operator.resource.models import DEFAULT_SECRET_KEY, CredentialsSpec, SecretKeyRef

log = logging.getLogger("akua_operator")

#: Items per page of GET /clusters (the contract's maximum).
PAGE_LIMIT = 100
#: A sweep asked for by a handler starts this long after the last ask ...
ASK_DEBOUNCE = 1.0
#: ... but at most this long after the first one.
ASK_MAX_DELAY = 10.0
#: A handler waits at most this long for the sweep it asked for, then reads the cluster itself.
LOOKUP_TIMEOUT = 60.0
#: Cycles the follower runs at once.
FOLLOW_CONCURRENCY = 8
#: A follow-up cycle that failed unexpectedly is tried again after this long.
FOLLOW_ERROR_DELAY = 10.0

#: (namespace, Secret name, key) of a Secret's token; None: the operator's own token.
Source = tuple[str, str, str] | None
#: The credentials a sweep lists with: the token's source and the workspace (akua-context).
SweepKey = tuple[Source, str | None]


@dataclass(slots=True)
class Entry:
    """What the observer remembers of one AkuaCluster (no spec, no conditions)."""

    uid: str
    namespace: str
    name: str
    cluster_id: str | None
    source: Source
    workspace: str | None
    etag: str | None
    state: str | None
    cluster_name: str | None
    reconciling: bool | None
    skip: bool  # being deleted or paused
    memory: ResourceState | None = None  # the per-object memory (its lock) from kopf's memo

    @property
    def key(self) -> SweepKey:
        return (self.source, self.workspace)


def entry_from(body: Mapping[str, Any], memory: ResourceState | None = None) -> Entry | None:
    """The index entry of an AkuaCluster body (None without a uid)."""
    meta = body.get("metadata") or {}
    uid = str(meta.get("uid") or "")
    if not uid:
        return None
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    if not isinstance(spec, Mapping) or not isinstance(status, Mapping):
        return None
    namespace = str(meta.get("namespace") or "")
    creds = spec.get("credentials") or {}
    ref = creds.get("secretRef") if isinstance(creds, Mapping) else None
    source: Source = None
    if isinstance(ref, Mapping) and ref.get("name"):
        source = (namespace, str(ref["name"]), str(ref.get("key") or DEFAULT_SECRET_KEY))
    workspace = status.get("workspaceId") or (
        creds.get("workspaceId") if isinstance(creds, Mapping) else None
    )
    annotations = meta.get("annotations") or {}
    reconciling = status.get("reconciling")
    return Entry(
        uid=uid,
        namespace=namespace,
        name=str(meta.get("name") or ""),
        cluster_id=_text(status.get("clusterId")) or _text(spec.get("clusterId")),
        source=source,
        workspace=_text(workspace),
        etag=_text(status.get("etag")),
        state=_text(status.get("state")),
        cluster_name=_text(status.get("name")),
        reconciling=reconciling if isinstance(reconciling, bool) else None,
        skip=bool(meta.get("deletionTimestamp")) or paused(dict(annotations)),
        memory=memory,
    )


def _text(value: Any) -> str | None:
    return str(value) if value else None


def changed(entry: Entry, cluster: Cluster) -> bool:
    """Whether the list item shows something the resource's status does not."""
    return (
        entry.etag != cluster.etag
        or entry.state != str(cluster.state)
        or entry.cluster_name != cluster.name
        or entry.reconciling is not cluster.reconciling
    )


class SweepSchedule:
    """When a key's next sweep is due (pure; an injectable clock).

    Periodically every ``interval`` after the last sweep started; after an ask, ``debounce``
    after the last ask but at most ``max_delay`` after the first ask since the last sweep
    started (asks that arrive together make one sweep)."""

    def __init__(
        self,
        interval: float,
        *,
        debounce: float = ASK_DEBOUNCE,
        max_delay: float = ASK_MAX_DELAY,
        first: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = max(0.1, interval)
        self.debounce = debounce
        self.max_delay = max_delay
        self._clock = clock
        self._periodic = clock() + (self.interval if first is None else first)
        self._first_ask: float | None = None
        self._last_ask: float | None = None

    def ask(self) -> None:
        now = self._clock()
        if self._first_ask is None:
            self._first_ask = now
        self._last_ask = now

    def due(self) -> float:
        """The monotonic time the next sweep should start."""
        due = self._periodic
        if self._first_ask is not None and self._last_ask is not None:
            asked = min(self._last_ask + self.debounce, self._first_ask + self.max_delay)
            due = min(due, asked)
        return due

    def started(self) -> None:
        """A sweep starts now."""
        self._periodic = self._clock() + self.interval
        self._first_ask = self._last_ask = None


class Follower:
    """Runs cycles that are due (a seed or a follow-up); its task exists only while there is
    work. ``run(uid, seed)`` returns the delay after which to run again, or None."""

    def __init__(
        self,
        run: Callable[[str, ClusterObserved | None], Awaitable[float | None]],
        *,
        concurrency: int = FOLLOW_CONCURRENCY,
    ) -> None:
        self._run = run
        self._due: dict[str, tuple[float, ClusterObserved | None]] = {}
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        return self._task is not None

    async def wait_idle(self) -> None:
        """Until no work is left (the follower's task has ended)."""
        await self._idle.wait()

    def schedule(self, uid: str, delay: float = 0.0, seed: ClusterObserved | None = None) -> None:
        when = time.monotonic() + max(0.0, delay)
        previous = self._due.get(uid)
        if previous is not None:
            when = min(when, previous[0])
            seed = seed or previous[1]
        self._due[uid] = (when, seed)
        self._wake.set()
        if self._task is None:
            self._idle.clear()
            self._task = asyncio.create_task(self._loop(), name="akua-observe-follower")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        self._due.clear()
        self._idle.set()

    async def _loop(self) -> None:
        try:
            while self._due or self._tasks:
                self._wake.clear()
                now = time.monotonic()
                ready = [
                    u for u, (t, _) in self._due.items() if t <= now and u not in self._running
                ]
                for uid in ready:
                    _, seed = self._due.pop(uid)
                    self._running.add(uid)
                    task = asyncio.create_task(self._one(uid, seed))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                waiting = [t for u, (t, _) in self._due.items() if u not in self._running]
                timeout = max(0.0, min(waiting) - now) if waiting else None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self._task = None
            self._idle.set()

    async def _one(self, uid: str, seed: ClusterObserved | None) -> None:
        try:
            async with self._slots:
                try:
                    delay = await self._run(uid, seed)
                except Exception:
                    log.exception("observation of %s failed", uid)
                    with contextlib.suppress(Exception):
                        telemetry.current().handler_error("observe-follow")
                    delay = FOLLOW_ERROR_DELAY
        finally:
            self._running.discard(uid)
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)  # before the loop wakes: it counts what still runs
            self._wake.set()
        if delay is not None:
            self.schedule(uid, delay)


class ClusterSweeper:
    """The list sweeps of one credentials key (see the module docstring)."""

    def __init__(self, observer: Observer, key: SweepKey) -> None:
        self.observer = observer
        self.key = key
        interval = observer.runtime.settings.observe_interval
        jitter = max(0.0, observer.runtime.settings.observe_jitter) * interval
        self.schedule = SweepSchedule(
            interval,
            first=interval - random.uniform(0, min(jitter, interval)),  # noqa: S311 - jitter
        )
        # cluster id -> futures of handlers waiting for the item (asked before / during a sweep)
        self._asks: dict[str, list[asyncio.Future[Cluster | None]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"akua-sweep-{id(self):x}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for futures in self._asks.values():
            for fut in futures:
                if not fut.done():
                    fut.set_result(None)
        self._asks.clear()

    def ask(self, cluster_id: str) -> asyncio.Future[Cluster | None]:
        """The item of ``cluster_id`` from the next sweep (None: absent, or the sweep failed)."""
        fut: asyncio.Future[Cluster | None] = asyncio.get_running_loop().create_future()
        self._asks.setdefault(cluster_id, []).append(fut)
        self.schedule.ask()
        self._wake.set()
        return fut

    async def _loop(self) -> None:
        while True:
            while (delay := self.schedule.due() - time.monotonic()) > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self.schedule.started()
            outcome = "failed"
            try:
                outcome = await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the cluster list sweep failed")
                with contextlib.suppress(Exception):
                    telemetry.current().handler_error("sweep")
            finally:
                tel = telemetry.current()
                tel.tracker.mark_sweep()
                with contextlib.suppress(Exception):
                    tel.metrics.observe_sweep_inc(outcome)

    async def sweep(self) -> str:
        """One sweep: page the list, act on what changed. Returns its outcome for the metric
        (``ok``, ``idle``: nothing to sweep, ``failed``: a handled failure, ``paused``: kopf
        peering paused this replica)."""
        observer = self.observer
        asked = {cid: list(futs) for cid, futs in self._asks.items()}
        entries = [e for e in observer.entries.values() if e.key == self.key and e.cluster_id]
        if observer.paused:
            self._answer(asked, None)
            return "paused"
        if not entries and not asked:
            return "idle"
        try:
            creds = await observer.credentials(self.key)
        except CredentialsError as exc:
            log.warning("cannot list clusters: %s", exc)
            self._fallback(entries, asked)
            return "failed"
        by_cluster: dict[str, list[Entry]] = {}
        for entry in entries:
            if entry.cluster_id is not None:
                by_cluster.setdefault(entry.cluster_id, []).append(entry)
        seen: set[str] = set()
        cursor: str | None = None
        client = observer.runtime.client
        while True:
            read_at = time.monotonic()
            try:
                page = await client.list_clusters(
                    creds=creds, priority=Priority.OBSERVE, limit=PAGE_LIMIT, cursor=cursor
                )
            except (AkuaUnauthorized, AkuaForbidden) as exc:
                # The token is refused: each resource's own cycle records it in its status.
                log.warning("cannot list clusters: %s", type(exc).__name__)
                self._fallback(entries, asked)
                return "failed"
            except AkuaError as exc:
                # Unreachable or overloaded: readiness reports it; the next sweep tries again.
                log.warning("cannot list clusters: %s", type(exc).__name__)
                self._answer(asked, None)
                return "failed"
            with contextlib.suppress(Exception):
                telemetry.current().metrics.observe_page_inc()
            for cluster in page.data:
                seen.add(cluster.id)
                for fut in self._asks.pop(cluster.id, ()):
                    if not fut.done():
                        fut.set_result(cluster)
                asked.pop(cluster.id, None)
                for entry in by_cluster.get(cluster.id, ()):
                    if not entry.skip and changed(entry, cluster):
                        observer.follower.schedule(
                            entry.uid, 0.0, ClusterObserved(cluster, read_at=read_at)
                        )
            if not page.has_more or not page.next_cursor:
                break
            cursor = page.next_cursor
        self._answer(asked, None)  # asked before the sweep began and not listed: absent
        for cid, group in by_cluster.items():
            if cid not in seen:
                for entry in group:
                    if not entry.skip:
                        observer.follower.schedule(entry.uid, 0.0)  # one GET: gone or moved
        return "ok"

    def _answer(
        self, asked: Mapping[str, list[asyncio.Future[Cluster | None]]], value: Cluster | None
    ) -> None:
        for cid, futures in asked.items():
            for fut in futures:
                if not fut.done():
                    fut.set_result(value)
            left = [f for f in self._asks.get(cid, ()) if not f.done()]
            if left:
                self._asks[cid] = left
            else:
                self._asks.pop(cid, None)

    def _fallback(
        self, entries: list[Entry], asked: Mapping[str, list[asyncio.Future[Cluster | None]]]
    ) -> None:
        """Without a list, each resource runs its own cycle (its status shows why)."""
        self._answer(asked, None)
        for entry in entries:
            if not entry.skip:
                self.observer.follower.schedule(entry.uid, 0.0)


class Observer:
    """The index of AkuaClusters, a :class:`ClusterSweeper` per credentials key, the follower."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.entries: dict[str, Entry] = {}
        self.sweepers: dict[SweepKey, ClusterSweeper] = {}
        self.follower = Follower(self._observe)
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: kopf peering paused this replica (another one is active): no sweep acts, as kopf's
        #: own handlers do not run (handlers/peering.py calls :meth:`set_paused`).
        self.paused = False

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    # --- the index --------------------------------------------------------------------------

    def on_event(self, event_type: str | None, body: Mapping[str, Any], memo: Any) -> None:
        """A watch event (the telemetry hook's listener). kopf runs that sync hook in a thread:
        the entry is computed here, and recorded on the event loop (where the handlers create
        the per-object memory too, so both use one lock)."""
        uid = str((body.get("metadata") or {}).get("uid") or "")
        entry = None if event_type == "DELETED" else entry_from(body)
        if entry is not None and not self.runtime.shards.handles(body):
            entry = None  # another shard's object (core/shards.py): never observed here
        loop = self._loop
        if loop is None or loop.is_closed():
            self._record(uid, entry, memo)
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: shutting down
            loop.call_soon_threadsafe(self._record, uid, entry, memo)

    def _record(self, uid: str, entry: Entry | None, memo: Any) -> None:
        if entry is None:
            self.entries.pop(uid, None)
            return
        if memo is not None:
            memory = memo.get("akua_state")
            if not isinstance(memory, ResourceState):
                memory = memo["akua_state"] = ResourceState()
            entry.memory = memory
        self._store(entry)

    def note(self, body: Mapping[str, Any], memory: ResourceState | None) -> Entry | None:
        """Record what ``body`` shows (a handler run, or an object read by the observer)."""
        entry = entry_from(body, memory)
        if entry is not None:
            self._store(entry)
        return entry

    def _store(self, entry: Entry) -> None:
        old = self.entries.get(entry.uid)
        if entry.memory is None and old is not None:
            entry.memory = old.memory
        self.entries[entry.uid] = entry
        if entry.cluster_id and self._started:
            self._sweeper(entry.key)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = True
        for key in {e.key for e in self.entries.values() if e.cluster_id}:
            self._sweeper(key)
        if self._task is None:
            self._task = asyncio.create_task(self._tick(), name="akua-observer")

    async def stop(self) -> None:
        self._started = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        for sweeper in list(self.sweepers.values()):
            await sweeper.stop()
        self.sweepers.clear()
        await self.follower.stop()

    async def _tick(self) -> None:
        """Every interval: a sweeper for every key in the index, and a liveness mark when no
        key has one (nothing to sweep is an iteration too)."""
        interval = max(0.1, self.runtime.settings.observe_interval)
        while True:
            for key in {e.key for e in self.entries.values() if e.cluster_id}:
                self._sweeper(key)
            if not self.sweepers:
                tel = telemetry.current()
                tel.tracker.mark_sweep()
                with contextlib.suppress(Exception):
                    tel.metrics.observe_sweep_inc("idle")
            await asyncio.sleep(interval)

    def _sweeper(self, key: SweepKey) -> ClusterSweeper:
        sweeper = self.sweepers.get(key)
        if sweeper is None:
            sweeper = self.sweepers[key] = ClusterSweeper(self, key)
            sweeper.start()
        return sweeper

    # --- what the handlers ask ----------------------------------------------------------------

    async def lookup(self, body: Mapping[str, Any]) -> ClusterObserved | None:
        """The resource's cluster as the next sweep lists it (create/resume handlers), or None
        (no cluster id, skipped, absent, the sweep failed or took longer than LOOKUP_TIMEOUT:
        the handler's cycle then reads the cluster itself)."""
        entry = entry_from(body)
        if entry is None or entry.cluster_id is None or entry.skip or not self._started:
            return None
        fut = self._sweeper(entry.key).ask(entry.cluster_id)
        try:
            cluster = await asyncio.wait_for(asyncio.shield(fut), LOOKUP_TIMEOUT)
        except TimeoutError:
            return None
        return ClusterObserved(cluster) if cluster is not None else None

    async def credentials(self, key: SweepKey) -> Credentials:
        source, workspace = key
        spec = None
        namespace = ""
        if source is not None:
            namespace, name, secret_key = source
            spec = CredentialsSpec(secret_ref=SecretKeyRef(name=name, key=secret_key))
        creds = await self.runtime.kube.credentials(namespace, spec, self.runtime.token_source)
        return replace(creds, context=workspace) if workspace else creds

    # --- one observation ----------------------------------------------------------------------

    async def _observe(self, uid: str, seed: ClusterObserved | None) -> float | None:
        """Read the object, run the cycle (observe only); the delay of a follow-up or None."""
        entry = self.entries.get(uid)
        if entry is None or entry.skip or self.paused:
            return None
        body = await self.runtime.kube.get_akuacluster(entry.namespace, entry.name)
        if body is None or str((body.get("metadata") or {}).get("uid") or "") != uid:
            return None  # gone (its DELETED event drops the entry)
        fresh = self.note(body, entry.memory)
        if fresh is None or fresh.skip:
            return None
        memory = fresh.memory
        if memory is None:
            memory = fresh.memory = ResourceState()
        started = time.monotonic()
        try:
            action = await self.runtime.cycle(
                body, memory, deleting=False, observe_only=True, seed=seed
            )
        except InvalidSpecError:
            return None
        if isinstance(action, Requeue):
            if action.delay > 0:
                return max(0.1, action.delay)
            return max(0.1, 1.0 - (time.monotonic() - started))
        return None
