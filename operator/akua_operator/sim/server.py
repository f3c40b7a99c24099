"""Run the simulator as a real HTTP server (uvicorn) in a background thread."""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn
from starlette.types import Receive, Scope, Send

from akua_operator.sim.app import ConnectionDropped, SimApp, create_app
from akua_operator.sim.clock import Clock
from akua_operator.sim.config import SimConfig

__all__ = ["DropGuard", "SimServer"]

_DROP_MESSAGE = "ASGI callable returned without completing response."


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROP_MESSAGE


class DropGuard:
    """ASGI wrapper for real servers: a simulated dropped connection ends the app quietly, and
    the server closes the connection because the response is incomplete."""

    def __init__(self, app: SimApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ConnectionDropped:
            return


def install_log_filter() -> None:
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class SimServer:
    """The simulator on ``host:port`` (port 0: a free one) in a daemon thread.

    ``url`` is the API base (``http://127.0.0.1:PORT/v1``), ``admin_url`` the ``/_sim`` prefix.
    ``sim`` is the ``SimApp`` (state, journal) for in-process inspection.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        clock: Clock | None = None,
        log_level: str = "warning",
        ssl_certfile: str | None = None,
        ssl_keyfile: str | None = None,
    ) -> None:
        self.sim = create_app(config, clock=clock)
        # TLS (https://) when a certificate and its key are given (PEM files).
        self.ssl_certfile = ssl_certfile
        self.ssl_keyfile = ssl_keyfile
        self.host = host
        self.port = port
        self.log_level = log_level
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        scheme = "https" if self.ssl_certfile else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    @property
    def admin_url(self) -> str:
        return f"{self.base}/_sim"

    def violations(self) -> list[dict[str, Any]]:
        """Responses that broke the contract or the guide so far (``validate_responses``):
        each the journal entry's request, status and ``problems``. Empty when not validating."""
        return self.sim.violations.read()

    def start(self, timeout: float = 15.0) -> Self:
        if self._thread is not None:
            raise RuntimeError("already started")
        install_log_filter()
        config = uvicorn.Config(
            DropGuard(self.sim),
            host=self.host,
            port=self.port,
            log_level=self.log_level,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            ssl_certfile=self.ssl_certfile,
            ssl_keyfile=self.ssl_keyfile,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, name="akua-sim", daemon=True)
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"akua-sim failed to start on {self.host}:{self.port}")
            if time.monotonic() > deadline:
                server.should_exit = True
                raise RuntimeError("akua-sim did not start in time")
            time.sleep(0.01)
        for srv in server.servers:
            for sock in srv.sockets:
                self.port = int(sock.getsockname()[1])
                break
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
