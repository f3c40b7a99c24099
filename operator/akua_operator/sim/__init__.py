"""A faithful simulator of the Akua API (ASGI app, ``akua-sim`` command, in-thread server)."""

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ModuleNotFoundError as missing:  # the operator's image: installed without the extra
    raise ModuleNotFoundError(
        f"the Akua API simulator needs its web stack ({missing.name} is not installed): "
        "install akua-operator[sim]",
        name=missing.name,
    ) from missing

from akua_operator.sim.app import ConnectionDropped, SimApp, create_app
from akua_operator.sim.clock import Clock, FakeClock, RealClock
from akua_operator.sim.config import STEP_NAMES, FaultConfig, Scenario, SimConfig
from akua_operator.sim.transport import SimTransport

__all__ = [
    "STEP_NAMES",
    "Clock",
    "ConnectionDropped",
    "FakeClock",
    "FaultConfig",
    "RealClock",
    "Scenario",
    "SimApp",
    "SimConfig",
    "SimTransport",
    "create_app",
]
