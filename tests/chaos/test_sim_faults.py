"""Deletions through a faulty Akua API: 20% 503, 10% dropped connections (the response lost
after the server acted), 429 storms with Retry-After, and stale reads after writes.

Every deletion completes, no duplicate operation is started, Retry-After is honoured, and the
token leaks nowhere.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import chaoskit
import pytest
from chaoskit import Scale

import harness

pytestmark = [pytest.mark.e2e]

RETRY_AFTER = 1
RATE, BURST = 4.0, 4  # the operator's own client-side limit for this test (--api-rate/--api-burst)
BASE_FAULTS: dict[str, Any] = {
    "error_rate_503": 0.2,
    "drop_rate": 0.1,
    "retry_after_seconds": RETRY_AFTER,
    "stale_read_seconds": 2.0,
}


def _storms(sim: harness.SimProcess, stop: threading.Event) -> None:
    """From the start, every 4 s a 1.5 s storm in which 90% of calls get 429 + Retry-After."""
    while not stop.is_set():
        sim.set_faults(**BASE_FAULTS, error_rate_429=0.9)
        if stop.wait(1.5):
            break
        sim.set_faults(**BASE_FAULTS)
        stop.wait(2.5)


def _wait_for_faults(
    sim: harness.SimProcess, name: str, count: int, since: int, timeout: float = 20
) -> None:
    """Until ``count`` faults ``name`` were injected after journal entry ``since`` (the base
    faults inject drops and 503s before, e.g. while the clusters are observed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for e in sim.journal(since) if e["fault"] == name) >= count:
            return
        time.sleep(0.1)


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
    operator = operator_factory(sim.url, "--api-rate", str(RATE), "--api-burst", str(BURST))
    operator.start()
    sim.admin("PATCH", "/config", {"step_seconds": 1.0})  # deletions of 4 s: several storms
    sim.set_faults(**BASE_FAULTS)
    chaoskit.wait_all_observed(watcher, len(names), operator, timeout=90 + scale.deletions)

    # The worst case first: the first DELETEs are carried out, but their answers are lost.
    since = sim.journal_seq()
    sim.set_faults(
        **{**BASE_FAULTS, "error_rate_503": 0.0, "drop_rate": 1.0},
        methods=["DELETE"],
        count=2,
    )
    t0 = time.time()
    harness.delete_all(kube_client, namespace)
    _wait_for_faults(sim, "drop_after", 2, since)
    # Then two calls in a row answered 503 (whatever they are), so every run sees some.
    since = sim.journal_seq()
    sim.set_faults(**{**BASE_FAULTS, "error_rate_503": 1.0}, count=2)
    _wait_for_faults(sim, "503", 2, since)
    stop = threading.Event()
    storms = threading.Thread(target=_storms, args=(sim, stop), daemon=True)
    storms.start()
    try:
        chaoskit.wait_all_gone(watcher, names, timeout=120 + 4 * scale.deletions)
    finally:
        stop.set()
        storms.join(5)
        sim.clear_faults()
    watcher.stop()
    assert operator.alive(), "the operator survived the faults"

    journal = sim.journal()
    faults = {e["fault"] for e in journal if e["fault"]}
    injected = Counter(e["fault"] for e in journal if e["fault"])
    delete_answers = Counter(e["status"] for e in journal if e["method"] == "DELETE")
    print(f"calls {len(journal)}, faults injected {injected}, DELETE answers {delete_answers}")
    dropped_deletes = [e for e in journal if e["method"] == "DELETE" and e["fault"] == "drop_after"]
    deletes = [
        (e["time"] - t0, e["path"][-6:], e["status"], e["fault"])
        for e in journal
        if e["method"] == "DELETE"
    ]
    assert dropped_deletes and dropped_deletes[0]["time"] >= t0, deletes
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

    # The client's rate limit held: in any window of w seconds, at most burst + rate * w calls
    # (one more for a token taken just before the window opened).
    times = sorted(e["time"] for e in journal)
    for window in (1.0, 2.0, 5.0):
        most = max(
            sum(1 for t in times[i:] if t - start <= window) for i, start in enumerate(times)
        )
        assert most <= BURST + RATE * window + 1, f"{most} calls within {window}s"

    chaoskit.assert_token_nowhere(
        token, kube_client, namespace, operator.log_text(), chaoskit.statuses_text(watcher)
    )
