"""An httpx transport that talks to the simulator in-process (no sockets)."""

from __future__ import annotations

import httpx

from akua_operator.sim.app import ConnectionDropped, SimApp

__all__ = ["SimTransport"]


class SimTransport(httpx.ASGITransport):
    """``httpx.ASGITransport`` for a ``SimApp``: a simulated dropped connection surfaces as
    ``httpx.RemoteProtocolError``, as it would from a real server."""

    def __init__(self, sim: SimApp) -> None:
        super().__init__(app=sim)
        self.sim = sim

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body", request=request
            ) from exc
