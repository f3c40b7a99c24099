"""kopf glue: start/stop the telemetry server with the operator, and (optionally) follow the watch.

``register(tel)`` adds to a kopf registry (the default one unless given):

* a startup handler that starts the HTTP server and marks startup complete (register it after
  the operator's own startup handlers: kopf runs them in registration order; or pass
  ``mark_started=False`` and call ``tel.tracker.mark_started()`` yourself);
* a cleanup handler that fails readiness and stops the server;
* a probe (kopf's own ``--liveness`` endpoint then also shows our progress);
* with ``watch=True``, an event handler on AkuaClusters that marks every watch event and keeps
  ``akua_operator_resources``, ``akua_operator_finalizers_held``,
  ``akua_operator_oldest_finalizer_age_seconds`` and ``akua_operator_deletion_held_seconds`` current
  from the objects themselves, so the operator's handlers need not call anything for those.
  kopf logs "Handler ... succeeded." for each event handler run; :class:`_QuietWatchHook`
  drops exactly those lines for this handler. ``listeners`` get every such event too
  (``listener(event_type, body, memo)``, memo: kopf's per-object memo): the operator's index of
  resources for its list sweeps (handlers/observer.py) is fed this way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import kopf

from akua_operator.telemetry import Telemetry

__all__ = ["WATCH_HANDLER_ID", "apply_watch_event", "register"]

WATCH_HANDLER_ID = "akua_telemetry_watch"
FINALIZER = "akua.dev/finalizer"


class _QuietWatchHook(logging.Filter):
    """Drops kopf's per-event success line of the telemetry watch handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (WATCH_HANDLER_ID in message and message.endswith("succeeded."))


def apply_watch_event(
    tel: Telemetry, event_type: str | None, body: Mapping[str, Any], finalizer: str = FINALIZER
) -> None:
    """Fold one watch event of an AkuaCluster into the telemetry (pure; unit-testable)."""
    tel.tracker.mark_watch_event()
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    name = str(meta.get("name") or "")
    uid = str(meta.get("uid") or "")
    if event_type == "DELETED":
        tel.forget_resource(namespace, name)
        if uid:
            tel.finalizer_released(uid)
        return
    status = body.get("status") or {}
    conditions = (status.get("conditions") or []) if isinstance(status, Mapping) else []
    tel.record_resource(
        namespace, name, [c for c in conditions if isinstance(c, Mapping)], reconciled=False
    )
    deleting = meta.get("deletionTimestamp")
    if uid and deleting and finalizer in (meta.get("finalizers") or []):
        tel.record_finalizer_held(uid, str(deleting), namespace, name)
    elif uid:
        tel.finalizer_released(uid)


def register(
    tel: Telemetry,
    *,
    registry: kopf.OperatorRegistry | None = None,
    mark_started: bool = True,
    watch: bool = False,
    group: str = "akua.dev",
    version: str = "v1alpha1",
    plural: str = "akuaclusters",
    finalizer: str = FINALIZER,
    listeners: Iterable[Callable[[str | None, Mapping[str, Any], Any], None]] = (),
) -> None:
    """Register the telemetry's kopf handlers (see the module docstring)."""
    notify = tuple(listeners)

    @kopf.on.startup(id="akua_telemetry_start", registry=registry)
    async def _telemetry_start(**_: Any) -> None:
        try:
            await tel.start()
        except OSError as exc:
            # A taken port will not free itself: stop the operator instead of retrying forever.
            raise kopf.PermanentError(
                f"cannot serve metrics/health on ports {tel.settings.metrics_port}/"
                f"{tel.settings.health_port}: {exc}"
            ) from exc
        if mark_started:
            tel.tracker.mark_started()

    @kopf.on.cleanup(id="akua_telemetry_stop", registry=registry)
    async def _telemetry_stop(**_: Any) -> None:
        await tel.stop()

    @kopf.on.probe(id="akua_progress", registry=registry)
    def _telemetry_probe(**_: Any) -> dict[str, Any]:
        tel.refresh()
        return tel.tracker.snapshot()

    if watch:

        @kopf.on.event(group, version, plural, id=WATCH_HANDLER_ID, registry=registry)
        def _telemetry_watch(
            event: Mapping[str, Any], body: Mapping[str, Any], memo: Any = None, **_: Any
        ) -> None:
            apply_watch_event(tel, event.get("type"), body, finalizer)
            for listener in notify:
                listener(event.get("type"), body, memo)

        objects = logging.getLogger("kopf.objects")
        if not any(isinstance(f, _QuietWatchHook) for f in objects.filters):
            objects.addFilter(_QuietWatchHook())
