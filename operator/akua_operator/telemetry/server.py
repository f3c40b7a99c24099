"""One small aiohttp server for ``/metrics``, ``/healthz`` and ``/readyz``, on the operator's loop.

The metrics port serves ``/metrics``; the health port serves ``/healthz`` and ``/readyz``. When both
ports are equal one listener serves all three paths. Running on kopf's own event loop is
deliberate: a loop that is blocked cannot answer, so kubelet's probe times out and the liveness
probe fails, which is exactly what should happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from aiohttp import web

from akua_operator.telemetry.health import ProbeResult, ProgressTracker
from akua_operator.telemetry.metrics import OperatorMetrics

__all__ = ["TelemetryServer"]

logger = logging.getLogger(__name__)

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _probe_response(result: ProbeResult) -> web.Response:
    return web.json_response(result.as_json(), status=200 if result.ok else 503)


class TelemetryServer:
    """Serves the metrics and probes; also runs the event-loop heartbeat for liveness."""

    def __init__(
        self,
        metrics: OperatorMetrics,
        tracker: ProgressTracker,
        *,
        host: str = "0.0.0.0",  # noqa: S104 - the pod is scraped and probed from outside
        metrics_port: int = 8080,
        health_port: int = 8081,
        heartbeat_interval: float = 1.0,
        before_probe: Callable[[], None] | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracker = tracker
        self.host = host
        self.metrics_port = metrics_port
        self.health_port = health_port
        self.heartbeat_interval = heartbeat_interval
        self._before_probe = before_probe
        self._runners: list[web.AppRunner] = []
        self._heartbeat: asyncio.Task[None] | None = None
        #: Ports actually bound (differs from the configured ones when those are 0).
        self.bound_metrics_port: int | None = None
        self.bound_health_port: int | None = None

    # -- handlers ---------------------------------------------------------------------------

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await asyncio.to_thread(self.metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": _CONTENT_TYPE})

    def _refresh(self) -> None:
        if self._before_probe is not None:
            try:
                self._before_probe()
            except Exception:
                logger.exception("Refreshing the progress marks before a probe failed")

    async def _healthz(self, _request: web.Request) -> web.Response:
        self._refresh()
        return _probe_response(self.tracker.liveness())

    async def _readyz(self, _request: web.Request) -> web.Response:
        self._refresh()
        return _probe_response(self.tracker.readiness())

    def _app(self, *, metrics: bool, health: bool) -> web.Application:
        app = web.Application()
        if metrics:
            app.router.add_get("/metrics", self._metrics)
        if health:
            app.router.add_get("/healthz", self._healthz)
            app.router.add_get("/readyz", self._readyz)
        return app

    # -- lifecycle --------------------------------------------------------------------------

    async def _start_app(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self.host, port)
        await site.start()
        addresses = runner.addresses  # the sockets bound so far, across this runner's sites
        return int(addresses[-1][1]) if addresses else port

    async def start(self) -> None:
        """Bind the listeners and start the heartbeat; returns at once (nothing blocks)."""
        if self._runners:
            return
        try:
            if self.metrics_port == self.health_port and self.metrics_port != 0:
                port = await self._start_app(
                    self._app(metrics=True, health=True), self.metrics_port
                )
                self.bound_metrics_port = self.bound_health_port = port
            else:
                self.bound_metrics_port = await self._start_app(
                    self._app(metrics=True, health=False), self.metrics_port
                )
                self.bound_health_port = await self._start_app(
                    self._app(metrics=False, health=True), self.health_port
                )
        except BaseException:
            await self.stop()
            raise
        self._heartbeat = asyncio.create_task(self._beat(), name="akua-telemetry-heartbeat")
        logger.info(
            "Serving /metrics on port %s and /healthz, /readyz on port %s",
            self.bound_metrics_port,
            self.bound_health_port,
        )

    async def stop(self) -> None:
        """Stop the heartbeat and close the listeners (idempotent)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    async def _beat(self) -> None:
        while True:
            expected = time.monotonic() + self.heartbeat_interval
            await asyncio.sleep(self.heartbeat_interval)
            self.tracker.mark_loop_tick(lag=time.monotonic() - expected)
