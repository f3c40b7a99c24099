"""Shards on the real control plane (issue 15): three operator processes (shards a and b, and
the default shard) against one simulator, each with its own Akua token so that every request
the simulator receives names the shard that sent it.

- each shard handles only its own AkuaClusters (finalizers, the requests about their clusters);
- relabelling a live object a -> b hands it over: b adopts it (its finalizer, its requests), a
  lets go and sends nothing more about it, and nothing is created or deleted;
- relabelling an object during its deletion is ignored: the shard that started the deletion
  (status.deletion.shard) finishes it, with exactly one DELETE (tests/oracles.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import TOKEN, Operator, Sim, akc, condition, get_akc, wait_for

from akua_operator.sim.config import SimConfig
from oracles import assert_exactly_once

TOKENS = {"a": "sk_akua_shard_a", "b": "sk_akua_shard_b", "default": "sk_akua_shard_default"}
#: The test's own reads (``sim.cluster_exists``) use TOKEN.
BY_TOKEN = {TOKEN: "test", **{token: shard for shard, token in TOKENS.items()}}
FIN = "akua.dev/finalizer"
FINALIZERS = {"a": f"{FIN}-a", "b": f"{FIN}-b", "default": FIN}


@pytest.fixture
def sim_config() -> SimConfig:
    # Deletes take 4 steps of 1.5 s: time to relabel an object while it is being deleted.
    return SimConfig(step_seconds=1.5, tokens=[TOKEN, *TOKENS.values()])


class Senders:
    """Every API request as it reaches the simulator: (shard that sent it, method, path)."""

    def __init__(self, sim: Sim) -> None:
        self.entries: list[tuple[str, str, str]] = []
        app = sim.server.sim
        inner = app.app

        async def spy(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = dict(scope.get("headers") or [])
                auth = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
                self.entries.append((BY_TOKEN.get(auth, "?"), scope["method"], scope["path"]))
            await inner(scope, receive, send)

        app.app = spy  # type: ignore[assignment]

    def about(self, cluster_id: str, since: int = 0) -> list[tuple[str, str, str]]:
        return [e for e in self.entries[since:] if cluster_id in e[2] and e[0] != "test"]

    def shards_about(self, cluster_id: str, since: int = 0) -> set[str]:
        return {shard for shard, _, _ in self.about(cluster_id, since)}


@pytest.fixture
def shards(
    sim: Sim, operator_env: dict[str, str], namespace: str, crd: str, tmp_path: Path
) -> Iterator[dict[str, Operator]]:
    ops: dict[str, Operator] = {}
    for shard, token in TOKENS.items():
        env = {**operator_env, "AKUA_TOKEN": token, "AKUA_SHARD_NAMES": "a,b"}
        if shard != "default":
            env["AKUA_SHARD"] = shard
        ops[shard] = Operator(env, namespace, tmp_path / f"operator-{shard}.log")
    try:
        for op in ops.values():
            op.start()
        yield ops
    finally:
        for op in ops.values():
            op.stop()


def labelled(name: str, namespace: str, shard: str | None, **spec: Any) -> dict[str, Any]:
    obj = akc(name, namespace, **spec)
    if shard is not None:
        obj["metadata"]["labels"] = {"akua.dev/shard": shard}
    return obj


def ready(kubectl: Any, name: str, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(
        f"{name} observed",
        lambda: (
            (o := get_akc(kubectl, name, namespace))
            and condition(o, "Ready").get("status") == "True"
            and o
        ),
    )
    return obj


def finalizers(kubectl: Any, name: str, namespace: str) -> list[str]:
    obj = get_akc(kubectl, name, namespace)
    return list(((obj or {}).get("metadata") or {}).get("finalizers") or [])


def test_three_shards_each_serve_their_own_and_hand_over_on_relabel(
    kubectl: Any, sim: Sim, namespace: str, shards: dict[str, Operator]
) -> None:
    senders = Senders(sim)
    # label -> the shard that must serve it ("c" names no configured shard: the default one)
    objects = {"on-a": "a", "on-b": "b", "unlabelled": None, "on-c": "c", "moved": "a"}
    owner = {"on-a": "a", "on-b": "b", "unlabelled": "default", "on-c": "default", "moved": "a"}
    ids = {name: sim.seed(f"{name}-{namespace}")["id"] for name in objects}
    for name, label in objects.items():
        kubectl.apply(labelled(name, namespace, label, clusterId=ids[name]))
    for name in objects:
        ready(kubectl, name, namespace)
        wait_for(
            f"{name} holds its shard's finalizer only",
            lambda name=name: finalizers(kubectl, name, namespace) == [FINALIZERS[owner[name]]],
        )
    for name in objects:
        # Adoption reads the cluster from a list sweep (GET /clusters, naming no cluster): no
        # request about it may come from another shard; its finalizer says who serves it.
        assert senders.shards_about(ids[name]) <= {owner[name]}, (name, senders.about(ids[name]))
    for op in shards.values():
        op.assert_alive()

    # Relabel a live object a -> b: b adopts it, a lets go; nothing is created or deleted.
    moved = ids["moved"]
    before = get_akc(kubectl, "moved", namespace) or {}
    mark = len(senders.entries)
    kubectl("label", "akc", "moved", "-n", namespace, "akua.dev/shard=b", "--overwrite")
    wait_for(
        "b's finalizer replaced a's",
        lambda: finalizers(kubectl, "moved", namespace) == [FINALIZERS["b"]],
    )
    # a has let go: a change to the object now reaches b alone, and b observes the cluster.
    let_go = len(senders.entries)
    kubectl("annotate", "akc", "moved", "-n", namespace, "example.com/poke=1")
    kubectl("annotate", "akc", "on-a", "-n", namespace, "example.com/poke=1")
    wait_for(
        "b observed the poked object",
        lambda: ("b", "GET", f"/v1/clusters/{moved}") in senders.about(moved, let_go),
    )
    wait_for(
        "a observed its own poked object",
        lambda: ("a", "GET", f"/v1/clusters/{ids['on-a']}") in senders.about(ids["on-a"], let_go),
    )
    assert senders.shards_about(moved, let_go) == {"b"}, senders.about(moved, let_go)
    assert {m for _, m, _ in senders.about(moved, mark)} == {"GET"}, senders.about(moved, mark)
    assert all(m == "GET" for _, m, p in senders.entries[mark:] if "/clusters" in p), "a write"
    after = get_akc(kubectl, "moved", namespace) or {}
    assert after["status"]["clusterId"] == before["status"]["clusterId"] == moved
    assert sim.cluster_exists(moved)

    # Relabel during a deletion: ignored; the shard that started it finishes it, one DELETE.
    victim = ids["on-b"]
    kubectl("delete", "akc", "on-b", "-n", namespace, "--wait=false")
    wait_for(
        "b recorded itself as the deletion's shard",
        lambda: (
            (
                ((get_akc(kubectl, "on-b", namespace) or {}).get("status") or {}).get("deletion")
                or {}
            ).get("shard")
            == "b"
        ),
    )
    kubectl("label", "akc", "on-b", "-n", namespace, "akua.dev/shard=a", "--overwrite")
    during = get_akc(kubectl, "on-b", namespace)
    assert during is not None and during["metadata"].get("deletionTimestamp"), "deletion ended"
    assert during["metadata"]["finalizers"] == [FINALIZERS["b"]]
    wait_for("on-b gone", lambda: get_akc(kubectl, "on-b", namespace) is None, timeout=90)
    assert_exactly_once(sim.journal(), sim.state()["operations"], [victim])
    assert not sim.cluster_exists(victim)
    deletes = [e for e in senders.about(victim) if e[1] == "DELETE"]
    assert deletes and {s for s, _, _ in deletes} == {"b"}, deletes
    assert senders.shards_about(victim) == {"b"}, senders.about(victim)

    # The other objects are untouched: nothing but observations, each by its own shard.
    for name in ("on-a", "unlabelled", "on-c"):
        assert senders.shards_about(ids[name]) <= {owner[name]}, name
        assert {m for _, m, _ in senders.about(ids[name])} <= {"GET"}, name
        assert finalizers(kubectl, name, namespace) == [FINALIZERS[owner[name]]]
    for op in shards.values():
        op.assert_alive()


def test_a_deletion_right_after_a_relabel_is_finished_by_the_shard_still_holding_it(
    kubectl: Any, sim: Sim, namespace: str, shards: dict[str, Operator]
) -> None:
    senders = Senders(sim)
    cluster_id = sim.seed(f"late-{namespace}")["id"]
    kubectl.apply(labelled("late", namespace, "a", clusterId=cluster_id))
    ready(kubectl, "late", namespace)
    wait_for("a's finalizer", lambda: finalizers(kubectl, "late", namespace) == [FINALIZERS["a"]])
    # b is down: relabelled to b, the object stays with a (no moment without a finalizer) ...
    shards["b"].stop()
    kubectl("label", "akc", "late", "-n", namespace, "akua.dev/shard=b", "--overwrite")
    kubectl("annotate", "akc", "late", "-n", namespace, "example.com/poke=1")
    wait_for(
        "a still observes it",
        lambda: (
            senders.about(cluster_id)[-1:] == [("a", "GET", f"/v1/clusters/{cluster_id}")]
            and len(senders.about(cluster_id)) > 1
        ),
    )
    assert finalizers(kubectl, "late", namespace) == [FINALIZERS["a"]]
    # ... and deleted now, a (the only shard holding it) deletes it; b, back, stays out of it.
    kubectl("delete", "akc", "late", "-n", namespace, "--wait=false")
    wait_for(
        "a recorded itself as the deletion's shard",
        lambda: (
            (
                ((get_akc(kubectl, "late", namespace) or {}).get("status") or {}).get("deletion")
                or {}
            ).get("shard")
            == "a"
        ),
    )
    shards["b"].start()
    wait_for("late gone", lambda: get_akc(kubectl, "late", namespace) is None, timeout=90)
    assert_exactly_once(sim.journal(), sim.state()["operations"], [cluster_id])
    assert senders.shards_about(cluster_id) == {"a"}, senders.about(cluster_id)
    for op in shards.values():
        op.assert_alive()
