"""Run the shipped Argo CD health check (docs/gitops/akuacluster.lua) on an object, with Lua 5.1
(the dialect of Argo CD's gopher-lua) from the lupa package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lupa.lua51 as lua51

HEALTH_LUA = Path(__file__).resolve().parents[2] / "docs" / "gitops" / "akuacluster.lua"


def argocd_health(obj: dict[str, Any]) -> dict[str, str]:
    """``{"status": ..., "message": ...}`` as Argo CD would compute it for ``obj``."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return {"status": str(result["status"]), "message": str(result["message"] or "")}
