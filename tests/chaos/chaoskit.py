"""Helpers of the chaos suite (the heavy lifting lives in bench/harness.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """How big a chaos run is: small in `make test`, full with --chaos-full."""

    full: bool
    deletions: int
    kills: int
    examples: int


# The flows below drive the real control plane, the simulator and the operator process.

import json  # noqa: E402
import time  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from typing import Any  # noqa: E402

import harness  # noqa: E402  (bench/harness.py)
from oracles import assert_exactly_once  # noqa: E402  (tests/oracles.py)

#: The step at which every delete operation waits for a person (an approval scenario), so the
#: chaos tests know operations are running while they kill or stop things.
HELD_STEP = "release_network"


def observed(seen: harness.Seen) -> bool:
    """The operator has adopted the object: finalizer on, the cluster's etag in status."""
    return harness.FINALIZER in seen.finalizers and bool(seen.status.get("etag"))


def adopt(
    sim: harness.SimProcess, api: Any, namespace: str, n: int, prefix: str = "akc"
) -> dict[str, str]:
    """Seed n clusters in the simulator and create n AkuaClusters adopting them."""
    names = [f"{prefix}-{i:03d}" for i in range(n)]
    ids = sim.seed_clusters(names)
    by_name = dict(zip(names, ids, strict=True))
    harness.create_objects(api, namespace, (harness.akua_cluster(k, v) for k, v in by_name.items()))
    return by_name


def wait_all_observed(
    watcher: harness.Watcher, n: int, operator: harness.ManagedOperator, timeout: float = 60
) -> None:
    def ready(snap: dict[str, harness.Seen]) -> bool:
        assert operator.alive(), f"operator exited:\n{operator.log_text()[-3000:]}"
        return len(snap) == n and all(observed(s) for s in snap.values())

    watcher.wait_for(ready, timeout, f"{n} AkuaClusters observed")


def wait_all_gone(
    watcher: harness.Watcher, names: list[str], timeout: float, what: str = "all deleted"
) -> None:
    watcher.wait_for(
        lambda snap: not snap and set(names) <= set(watcher.gone), timeout, what, poll=0.1
    )


def delete_operations(sim: harness.SimProcess, cluster_ids: list[str]) -> dict[str, list[dict]]:
    ops: dict[str, list[dict]] = defaultdict(list)
    for op in sim.operations():
        if op["type"] == "cluster.delete" and op["cluster_id"] in cluster_ids:
            ops[op["cluster_id"]].append(op)
    return ops


def assert_each_deleted_exactly_once(sim: harness.SimProcess, cluster_ids: list[str]) -> None:
    """The simulator's record: one SUCCEEDED delete per cluster, the cluster now 404, and every
    DELETE the operator sent for a cluster carried the same idempotency key (one attempt).
    Plus the exactly-once oracle of tests/oracles.py (accepted DELETE keys, not only the
    operations the simulator chose to start)."""
    assert_exactly_once(sim.journal(), sim.operations(), cluster_ids)
    ops = delete_operations(sim, cluster_ids)
    for cid in cluster_ids:
        states = [op["state"] for op in ops.get(cid, [])]
        assert states == ["SUCCEEDED"], f"{cid}: delete operations {states}"
        assert sim.api("GET", f"/clusters/{cid}").status_code == 404, cid
    keys: dict[str, set[str | None]] = defaultdict(set)
    statuses: Counter[int | None] = Counter()
    for entry in sim.journal():
        if entry["method"] == "DELETE":
            cid = entry["path"].rsplit("/", 1)[-1]
            keys[cid].add(entry.get("idempotency_key"))
            statuses[entry["status"]] += 1
            assert entry.get("if_match"), f"DELETE without if-match: {entry}"
    for cid in cluster_ids:
        assert len(keys[cid]) == 1 and None not in keys[cid], f"{cid}: keys {keys[cid]}"
    assert not {400, 422} & set(statuses), f"malformed or conflicting DELETEs: {statuses}"


def assert_token_nowhere(token: str, api: Any, namespace: str, *texts: str) -> None:
    """The token in no log line, Event, status or exception text that we can see."""
    for text in texts:
        assert token not in text, "the Akua token leaked into a log or status"
    for event in harness.list_events(api, namespace):
        blob = json.dumps(api.sanitize_for_serialization(event))
        assert token not in blob, f"the Akua token leaked into an Event: {event.reason}"


def statuses_text(watcher: harness.Watcher) -> str:
    return "\n".join(json.dumps(s.status, default=str) for s in watcher.seen)


def sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def hold_delete_operations(sim: harness.SimProcess) -> None:
    """Every delete operation from now on waits at HELD_STEP until approved."""
    sim.admin(
        "POST",
        "/scenarios",
        {"operation_type": "cluster.delete", "mode": "approval", "step": HELD_STEP, "times": None},
    )


def approve_until_gone(
    sim: harness.SimProcess,
    watcher: harness.Watcher,
    names: list[str],
    operator: harness.ManagedOperator,
    timeout: float,
) -> None:
    """Approve every held delete operation (as a person would) until every object is gone."""
    approved: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert operator.alive(), f"operator exited:\n{operator.log_text()[-3000:]}"
        for op in sim.operations():
            held = op["type"] == "cluster.delete" and op["state"] == "RUNNING"
            if held and op["id"] not in approved:
                resp = sim._http.post(
                    f"/_sim/operations/{op['id']}:approve", json={"step": HELD_STEP}
                )
                if resp.status_code == 200:
                    approved.add(op["id"])
        snap = watcher.snapshot()
        if not snap and set(names) <= set(watcher.gone):
            return
        time.sleep(0.2)
    raise AssertionError(f"not all deleted in {timeout}s: {sorted(watcher.snapshot())}")


def delete_objects(api: Any, namespace: str, names: list[str]) -> None:
    from kubernetes import client

    objs = client.CustomObjectsApi(api)
    for name in names:
        objs.delete_namespaced_custom_object(
            harness.GROUP, harness.VERSION, namespace, harness.PLURAL, name
        )


def running_at(sim_ops: list[dict[str, Any]], moment: float) -> list[str]:
    """Delete operations running at Akua at ``moment`` (the simulator's precise times)."""
    return [
        op["id"]
        for op in sim_ops
        if op["type"] == "cluster.delete"
        and op["started_at"] <= moment
        and (op["completed_at"] is None or op["completed_at"] > moment)
    ]
