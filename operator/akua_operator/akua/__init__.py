"""The Akua API: typed models, the error tree and the shared async client."""

from akua_operator.akua.client import AkuaClient, ClientConfig, Credentials
from akua_operator.akua.errors import (
    AkuaBadRequest,
    AkuaConflict,
    AkuaError,
    AkuaForbidden,
    AkuaHTTPError,
    AkuaNotFound,
    AkuaRateLimited,
    AkuaResponseError,
    AkuaRetryAfterPending,
    AkuaServerError,
    AkuaTimeout,
    AkuaTransportError,
    AkuaUnauthorized,
    AkuaUnprocessable,
)

__all__ = [
    "AkuaBadRequest",
    "AkuaClient",
    "AkuaConflict",
    "AkuaError",
    "AkuaForbidden",
    "AkuaHTTPError",
    "AkuaNotFound",
    "AkuaRateLimited",
    "AkuaResponseError",
    "AkuaRetryAfterPending",
    "AkuaServerError",
    "AkuaTimeout",
    "AkuaTransportError",
    "AkuaUnauthorized",
    "AkuaUnprocessable",
    "ClientConfig",
    "Credentials",
]
