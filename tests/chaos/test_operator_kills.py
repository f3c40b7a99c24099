"""The operator SIGKILLed at random (seeded) moments during deletions, restarted each time.

Every Akua cluster is deleted exactly once (the simulator's journal and operations), no
AkuaCluster is left behind, no duplicate operation is started, and the token leaks nowhere.
"""

from __future__ import annotations

import random
import time
from typing import Any

import chaoskit
import pytest
from chaoskit import Scale

import harness

pytestmark = [pytest.mark.e2e]


@pytest.mark.parametrize("seed", [1])
def test_kills_during_deletions_resume_and_delete_exactly_once(
    seed: int,
    scale: Scale,
    sim: harness.SimProcess,
    operator_factory: Any,
    kube_client: Any,
    kubeconfig: Any,
    namespace: str,
    token: str,
) -> None:
    rng = random.Random(seed)
    by_name = chaoskit.adopt(sim, kube_client, namespace, scale.deletions)
    names = list(by_name)
    watcher = harness.Watcher(kubeconfig, namespace)
    watcher.start()
    watcher.wait_ready()
    operator = operator_factory(sim.url)
    operator.start()
    chaoskit.wait_all_observed(watcher, len(names), operator, timeout=60 + scale.deletions)

    # Operations of 4 s per kill (12 s small, 60 s full): longer than the longest possible run
    # of kills (3.5 s each at most), so every kill lands while deletions are in flight.
    sim.admin("PATCH", "/config", {"step_seconds": float(scale.kills)})
    harness.delete_all(kube_client, namespace)
    remaining_at_kill: list[int] = []
    following_at_kill: list[int] = []  # objects whose operation id is already in status
    for _ in range(scale.kills):
        # Let the restarted operator get going (kopf needs a moment to start its watches),
        # then kill it at a random moment of its work.
        time.sleep(rng.uniform(0.05, 3.0))
        snap = watcher.snapshot()
        remaining_at_kill.append(len(snap))
        following_at_kill.append(sum(1 for seen in snap.values() if seen.op_id))
        operator.kill()
        time.sleep(rng.uniform(0.0, 0.5))
        operator.start()

    chaoskit.wait_all_gone(watcher, names, timeout=90 + 4 * scale.kills + 3 * scale.deletions)
    watcher.stop()

    print(f"objects left at each kill: {remaining_at_kill}")
    print(f"of which following an operation: {following_at_kill}")
    assert all(remaining_at_kill), "every kill must land while deletions are in flight"
    assert operator.starts == scale.kills + 1
    assert harness.list_objects(kube_client, namespace) == []
    chaoskit.assert_each_deleted_exactly_once(sim, list(by_name.values()))
    chaoskit.assert_token_nowhere(
        token, kube_client, namespace, operator.log_text(), chaoskit.statuses_text(watcher)
    )
