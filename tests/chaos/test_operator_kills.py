"""The operator SIGKILLed in the windows that matter during deletions, restarted each time.

The kills are not at random moments: each is triggered by what the operator and the simulator
show, alternately
- *a DELETE pending*: a batch of objects is deleted; once one of them has its intent (key,
  etag) in status, its DELETE is on its way to the simulator, which holds every DELETE 2 s
  before handling and answering it; the operator is killed then. The simulator's journal
  proves afterwards that a DELETE was in flight at the kill (arrived, not yet answered).
- *following*: a delete operation is running (every one waits at its last step for an
  approval) and the running operator has written its progress to status; it is killed then.
  The simulator's operations prove it was still running at the kill.

Every Akua cluster is deleted exactly once (tests/oracles.py: one operation, one accepted key),
no AkuaCluster is left behind, and the token leaks nowhere.
"""

from __future__ import annotations

import math
import time
from typing import Any

import chaoskit
import pytest
from chaoskit import Scale

import harness
from oracles import in_flight_at

pytestmark = [pytest.mark.e2e]

DELETE_LATENCY_MS = 2000


def pending_intent(seen: harness.Seen) -> bool:
    return seen.deleting and bool((seen.status.get("deletion") or {}).get("pending"))


def following(seen: harness.Seen) -> bool:
    op = seen.status.get("operation") or {}
    return seen.deleting and op.get("type") == "cluster.delete" and op.get("done") is False


def test_kills_while_deletes_are_pending_and_operations_followed_delete_exactly_once(
    scale: Scale,
    sim: harness.SimProcess,
    operator_factory: Any,
    kube_client: Any,
    kubeconfig: Any,
    namespace: str,
    token: str,
) -> None:
    by_name = chaoskit.adopt(sim, kube_client, namespace, scale.deletions)
    names = list(by_name)
    watcher = harness.Watcher(kubeconfig, namespace)
    watcher.start()
    watcher.wait_ready()
    operator = operator_factory(sim.url)
    operator.start()
    chaoskit.wait_all_observed(watcher, len(names), operator, timeout=60 + scale.deletions)

    chaoskit.hold_delete_operations(sim)
    sim.set_faults(latency_ms=DELETE_LATENCY_MS, methods=["DELETE"])
    kinds = ["delete" if i % 2 == 0 else "follow" for i in range(scale.kills)]
    batches = kinds.count("delete")
    size = math.ceil(len(names) / batches)
    todo = [names[i : i + size] for i in range(0, len(names), size)]
    kills: list[tuple[str, float, list[str]]] = []  # (kind, moment, what status showed)
    started = time.time()
    for kind in kinds:
        if kind == "delete" and todo:
            batch = todo.pop(0)
            chaoskit.delete_objects(kube_client, namespace, batch)
            watcher.wait_for(
                lambda s, b=batch: any(n in s and pending_intent(s[n]) for n in b),
                60,
                "a DELETE intent recorded in status",
            )
            # The DELETE goes out right after its intent is written; it then waits at the
            # simulator for DELETE_LATENCY_MS: kill well inside that.
            time.sleep(DELETE_LATENCY_MS / 4000)
            snap = watcher.snapshot()
            shown = [n for n in batch if n in snap and pending_intent(snap[n])]
        else:
            # A step change written by the operator running now (after its start).
            since = started

            def fresh_follow(_: dict[str, harness.Seen], since: float = since) -> bool:
                return any(s.t > since and following(s) for s in list(watcher.seen))

            watcher.wait_for(fresh_follow, 60, "an operation followed by the running operator")
            shown = [n for n, s in watcher.snapshot().items() if following(s)]
        kills.append((kind, time.time(), shown))
        operator.kill()
        operator.start()
        started = time.time()
    for batch in todo:  # what no kill was left for
        chaoskit.delete_objects(kube_client, namespace, batch)

    chaoskit.approve_until_gone(
        sim, watcher, names, operator, timeout=120 + 4 * scale.kills + 3 * scale.deletions
    )
    watcher.stop()

    journal = sim.journal()
    operations = sim.operations()
    pending_at_kill = [len(in_flight_at(journal, moment)) for _, moment, _ in kills]
    running_at_kill = [len(chaoskit.running_at(operations, moment)) for _, moment, _ in kills]
    following_at_kill = [len(shown) if kind == "follow" else 0 for kind, _, shown in kills]
    print(f"kills: {[kind for kind, _, _ in kills]}")
    print(f"DELETEs in flight at the simulator at each kill: {pending_at_kill}")
    print(f"objects following an operation at each follow kill: {following_at_kill}")
    print(f"delete operations running at Akua at each kill: {running_at_kill}")
    # The kills hit their windows.
    delete_kills = [i for i, (kind, _, _) in enumerate(kills) if kind == "delete"]
    follow_kills = [i for i, (kind, _, _) in enumerate(kills) if kind == "follow"]
    assert sum(1 for i in delete_kills if pending_at_kill[i]) >= 1, pending_at_kill
    if follow_kills:
        assert all(following_at_kill[i] and running_at_kill[i] for i in follow_kills), (
            following_at_kill,
            running_at_kill,
        )
    assert operator.starts == scale.kills + 1
    assert harness.list_objects(kube_client, namespace) == []
    chaoskit.assert_each_deleted_exactly_once(sim, list(by_name.values()))
    # The DELETEs killed in flight were resent with their key (and not replaced by new ones).
    resent = {e["idempotency_key"] for e in journal if e["method"] == "DELETE"}
    assert len([e for e in journal if e["method"] == "DELETE"]) > len(resent)
    chaoskit.assert_token_nowhere(
        token, kube_client, namespace, operator.log_text(), chaoskit.statuses_text(watcher)
    )
