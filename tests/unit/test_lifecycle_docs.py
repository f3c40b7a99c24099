"""The lifecycle docs stay true: the argocd-cm snippet is the shipped Lua, and docs/resource.md
explains every spec and status field of the models."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml
from argocd_lua import HEALTH_LUA, argocd_health
from pydantic import BaseModel

from akua_operator.resource.models import AkuaClusterSpec, AkuaClusterStatus

DOCS = Path(__file__).resolve().parents[2] / "docs"


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_the_argocd_cm_snippet_is_the_shipped_health_check() -> None:
    configmaps = [
        doc
        for block in yaml_blocks(DOCS / "gitops.md")
        for doc in yaml.safe_load_all(block)
        if isinstance(doc, dict) and doc.get("kind") == "ConfigMap"
    ]
    assert len(configmaps) == 1
    (cm,) = configmaps
    assert cm["metadata"]["name"] == "argocd-cm"
    lua = cm["data"]["resource.customizations.health.akua.dev_AkuaCluster"]
    assert lua == HEALTH_LUA.read_text()
    assert argocd_health({"metadata": {"generation": 1}})["status"] == "Progressing"


def _fields(model: type[BaseModel], prefix: str) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        path = f"{prefix}.{field.alias or name}"
        out.append(path)
        for arg in typing.get_args(field.annotation) or (field.annotation,):
            inner = typing.get_args(arg) or (arg,)
            for t in inner:
                if isinstance(t, type) and issubclass(t, BaseModel):
                    out.extend(_fields(t, path))
    return out


def test_resource_md_explains_every_field() -> None:
    text = (DOCS / "resource.md").read_text()
    missing = []
    for path in _fields(AkuaClusterSpec, "spec") + _fields(AkuaClusterStatus, "status"):
        if path in text:
            continue
        # Otherwise its name must appear (in backticks) in a row about one of its ancestors,
        # e.g. status.operation lists `id`, `type`, ... and `steps[]` each with `name`, ...
        parts = path.split(".")
        ancestors = [".".join(parts[:i]) for i in range(2, len(parts))]
        rows = [line for line in text.splitlines() if any(f"`{a}" in line for a in ancestors)]
        if any(f"`{parts[-1]}`" in row or f", {parts[-1]}" in row for row in rows):
            continue
        missing.append(path)
    assert missing == []
