"""Deletions through a faulty Akua API: 20% 503, 10% dropped connections (the response lost
after the server acted), 429 storms with Retry-After, and stale reads after writes.

Every deletion completes, no duplicate operation is started, Retry-After is honoured, and the
token leaks nowhere.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import chaoskit
import pytest
from chaoskit import Scale

import harness

pytestmark = [pytest.mark.e2e]

RETRY_AFTER = 1
BASE_FAULTS: dict[str, Any] = {
    "error_rate_503": 0.2,
    "drop_rate": 0.1,
    "retry_after_seconds": RETRY_AFTER,
    "stale_read_seconds": 2.0,
}


def _storms(sim: harness.SimProcess, stop: threading.Event) -> None:
    """Every few seconds, a 1.5 s storm in which 90% of calls get 429 with Retry-After."""
    while not stop.wait(3.0):
        sim.set_faults(**BASE_FAULTS, error_rate_429=0.9)
        if stop.wait(1.5):
            break
        sim.set_faults(**BASE_FAULTS)


def test_deletions_complete_through_503s_drops_429_storms_and_stale_reads(
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
    sim.set_faults(**BASE_FAULTS)
    chaoskit.wait_all_observed(watcher, len(names), operator, timeout=90 + scale.deletions)

    stop = threading.Event()
    storms = threading.Thread(target=_storms, args=(sim, stop), daemon=True)
    storms.start()
    t0 = time.time()
    try:
        harness.delete_all(kube_client, namespace)
        chaoskit.wait_all_gone(watcher, names, timeout=120 + 4 * scale.deletions)
    finally:
        stop.set()
        storms.join(5)
        sim.clear_faults()
    watcher.stop()
    assert operator.alive(), "the operator survived the faults"

    journal = sim.journal()
    faults = {e["fault"] for e in journal if e["time"] >= t0 and e["fault"]}
    assert {"503", "429", "drop_after"} <= faults, f"faults actually injected: {faults}"
    assert harness.list_objects(kube_client, namespace) == []
    chaoskit.assert_each_deleted_exactly_once(sim, list(by_name.values()))

    # Retry-After honoured: after a 429/503 on a call, the same call is not repeated sooner.
    last: dict[tuple[str, str], dict[str, Any]] = {}
    early = []
    for entry in journal:
        key = (entry["method"], entry["path"])
        prev = last.get(key)
        if prev is not None and prev["status"] in (429, 503):
            gap = entry["time"] - prev["time"]
            if gap < RETRY_AFTER - 0.05:
                early.append((key, round(gap, 3)))
        last[key] = entry
    assert not early, f"calls repeated before Retry-After elapsed: {early[:10]}"

    chaoskit.assert_token_nowhere(
        token, kube_client, namespace, operator.log_text(), chaoskit.statuses_text(watcher)
    )
