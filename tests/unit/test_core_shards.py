"""Which shard serves an AkuaCluster (core/shards.py) and the shard settings."""

from __future__ import annotations

import argparse
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from test_runtime import TOKEN, RecordingKube, seed
from test_runtime import body as resource

from akua_operator import settings as settings_mod
from akua_operator.akua.client import AkuaClient, ClientConfig
from akua_operator.core.shards import (
    Shards,
    finalizer_of,
    holds_operator_finalizer,
    parse_names,
)
from akua_operator.core.types import Release
from akua_operator.handlers.runtime import ResourceState, Runtime
from akua_operator.kube import TokenSource
from akua_operator.resource.models import FINALIZER
from akua_operator.settings import Settings
from akua_operator.sim.app import create_app
from akua_operator.sim.config import SimConfig
from akua_operator.sim.transport import SimTransport

NAMES = ("a", "b")
A = Shards("a", NAMES)
B = Shards("b", NAMES)
DEFAULT = Shards("", NAMES)
ALL = (A, B, DEFAULT)


def body(
    label: str | None = None,
    *,
    finalizers: tuple[str, ...] = (),
    deleting: bool = False,
    recorded: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "x", "finalizers": list(finalizers)}
    if label is not None:
        meta["labels"] = {"akua.dev/shard": label}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status = {"deletion": {"shard": recorded}} if recorded else {}
    return {"metadata": meta, "status": status}


def handlers_of(obj: dict[str, Any]) -> list[str]:
    return [s.label for s in ALL if s.handles(obj)]


@pytest.mark.parametrize(
    ("label", "owner"),
    [("a", "a"), ("b", "b"), (None, "default"), ("", "default"), ("c", "default"),
     ("default", "default")],
)  # fmt: skip
def test_each_live_object_has_exactly_one_shard_by_its_label(label: str | None, owner: str) -> None:
    labels = {} if label is None else {"akua.dev/shard": label}
    assert [s.label for s in ALL if s.serves(labels)] == [owner]
    assert handlers_of(body(label)) == [owner]


def test_each_shard_has_its_own_finalizer_and_the_default_keeps_the_operators() -> None:
    assert DEFAULT.finalizer == FINALIZER
    assert {A.finalizer, B.finalizer} == {f"{FINALIZER}-a", f"{FINALIZER}-b"}
    assert holds_operator_finalizer([A.finalizer]) and holds_operator_finalizer([FINALIZER])
    assert not holds_operator_finalizer(["other.io/finalizer", "akua.dev/operator-access"])


def test_relabel_of_a_live_object_keeps_the_old_shard_until_the_new_one_holds_it() -> None:
    # Labelled b now, only a's finalizer on it: both handle it (no moment without a finalizer).
    assert handlers_of(body("b", finalizers=(A.finalizer,))) == ["a", "b"]
    # Once b's finalizer is there, a lets go (its kopf removes a's finalizer).
    assert handlers_of(body("b", finalizers=(A.finalizer, B.finalizer))) == ["b"]
    assert handlers_of(body("b", finalizers=(B.finalizer,))) == ["b"]
    # To the default shard (label removed) the same way.
    assert handlers_of(body(None, finalizers=(A.finalizer,))) == ["a", "default"]
    assert handlers_of(body(None, finalizers=(A.finalizer, FINALIZER))) == ["default"]


def test_a_recorded_deletion_stays_with_its_shard_whatever_the_label() -> None:
    for label in ("a", "b", None, "c"):
        for fins in ((A.finalizer,), (A.finalizer, B.finalizer), (B.finalizer,)):
            obj = body(label, finalizers=fins, deleting=True, recorded="a")
            assert handlers_of(obj) == ["a"], (label, fins)
    assert handlers_of(body("a", finalizers=(FINALIZER,), deleting=True, recorded="default")) == [
        "default"
    ]


def test_an_unrecorded_deletion_goes_to_exactly_one_shard_holding_its_finalizer() -> None:
    # The label's owner holds its finalizer: it starts.
    assert handlers_of(body("a", finalizers=(A.finalizer,), deleting=True)) == ["a"]
    assert handlers_of(body("b", finalizers=(A.finalizer, B.finalizer), deleting=True)) == ["b"]
    # Relabelled a -> b just before the deletion, b never got its finalizer: a finishes it.
    assert handlers_of(body("b", finalizers=(A.finalizer,), deleting=True)) == ["a"]
    assert handlers_of(body(None, finalizers=(B.finalizer,), deleting=True)) == ["b"]
    # Several holders, the owner none of them: the default shard first, then by name.
    both = (B.finalizer, A.finalizer)
    assert handlers_of(body(None, finalizers=both, deleting=True)) == ["a"]
    assert handlers_of(body("b", finalizers=(FINALIZER, A.finalizer), deleting=True)) == ["default"]
    # Nobody's finalizer (or only an unconfigured shard's): no shard acts on it.
    assert handlers_of(body("a", deleting=True)) == []
    assert handlers_of(body("a", finalizers=(finalizer_of("zz"),), deleting=True)) == []


def test_shard_names_are_checked() -> None:
    assert parse_names(" b, a ,,a") == ("a", "b")
    for bad in ("default", "A", "-a", "a_b", "x" * 41):
        with pytest.raises(ValueError):
            parse_names(bad)
    assert Shards("default", NAMES).name == ""
    assert not Shards().sharded and Shards("", ("a",)).sharded


def _settings(*argv: str, **env: str) -> settings_mod.Settings:
    parser = argparse.ArgumentParser()
    settings_mod.add_arguments(parser)
    return settings_mod.from_args(parser.parse_args(list(argv)), env)


def test_shard_settings_flags_env_and_peering_per_shard() -> None:
    s = _settings("--shard", "a", "--shard-names", "a,b", "--peering-name", "akua-operator")
    assert (s.shard, s.shard_names, s.peering_name) == ("a", ("a", "b"), "akua-operator-a")
    s = _settings(AKUA_SHARD_NAMES="b,a", AKUA_PEERING_NAME="akua-operator")
    assert (s.shard, s.shard_names, s.peering_name) == ("", ("a", "b"), "akua-operator-default")
    s = _settings(AKUA_SHARD="default", AKUA_SHARD_NAMES="a")
    assert s.shard == ""
    # Not sharded: the peering name is as given.
    assert _settings("--peering-name", "akua-operator").peering_name == "akua-operator"
    with pytest.raises(ValueError, match="not in --shard-names"):
        _settings("--shard", "c", "--shard-names", "a,b")
    with pytest.raises(ValueError, match="AKUA_SHARD_NAMES"):
        _settings(AKUA_SHARD_NAMES="default")


def sharded_runtime(
    kube: RecordingKube, transport: httpx.AsyncBaseTransport, shard: str
) -> Runtime:
    client = AkuaClient(
        ClientConfig(base_url="http://sim/v1", rate=0, max_retries=0), transport=transport
    )
    settings = Settings(namespaces=("ns",), wait_timeout=1, shard=shard, shard_names=NAMES)
    return Runtime(
        settings,
        token_source=TokenSource(token=SecretStr(TOKEN)),
        kube=kube,  # type: ignore[arg-type]
        client=client,
    )


async def test_the_shard_that_starts_a_deletion_records_itself_before_any_akua_call() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=57))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = sharded_runtime(kube, SimTransport(sim), "b")
    state = ResourceState()
    await runtime.cycle(resource(cluster_id, {}, deleting=False), state, deleting=False)
    assert "deletion" not in kube.status  # a live object records nothing
    writes_before = len(kube.writes)
    calls_before = len(sim.journal.read(0))
    action = None
    for _ in range(20):
        action = await runtime.cycle(
            resource(cluster_id, kube.status, deleting=True), state, deleting=True
        )
        if isinstance(action, Release):
            break
    assert isinstance(action, Release)
    first, seen = kube.writes[writes_before]
    assert first["deletion"]["shard"] == "b"
    assert len(seen) == calls_before  # the deletion's first write, before any Akua call
    assert sum(1 for p, _ in kube.writes if "shard" in (p.get("deletion") or {})) == 1
    assert kube.status["deletion"]["shard"] == "b"
    assert sum(1 for e in sim.journal.read(0) if e["method"] == "DELETE") == 1
    await runtime.client.aclose()


async def test_an_unsharded_operator_records_no_shard() -> None:
    sim = create_app(SimConfig(step_seconds=0.05, seed=58))
    cluster_id = await seed(sim)
    kube = RecordingKube(sim)
    runtime = sharded_runtime(kube, SimTransport(sim), "")
    runtime.shards = Shards()  # as from Settings without --shard-names
    state = ResourceState()
    for _ in range(20):
        action = await runtime.cycle(
            resource(cluster_id, kube.status, deleting=True), state, deleting=True
        )
        if isinstance(action, Release):
            break
    assert not any("shard" in (p.get("deletion") or {}) for p, _ in kube.writes)
    await runtime.client.aclose()
