"""A faithful simulator of the Akua API (ASGI app, ``akua-sim`` command, in-thread server)."""

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
