"""kopf handlers (thin) and the reconcile runtime that connects them to the core."""

from akua_operator.handlers.akuacluster import register
from akua_operator.handlers.runtime import ResourceState, Runtime

__all__ = ["ResourceState", "Runtime", "register"]
