"""End to end: the Akua API answers a deletion with malformed bodies.

The simulator really acts (the cluster's delete operation starts and ends), but every answer the
operator gets for the DELETE and the operation is mangled: invalid JSON, missing fields, wrong
types, a huge document. The operator must not crash, must keep the finalizer (it cannot know the
operation's outcome), must say so in a condition, and once the API answers properly again must
finish with exactly one delete operation and no token anywhere.
"""

from __future__ import annotations

import json
import time
from typing import Any

import chaoskit
import pytest

import harness

pytestmark = [pytest.mark.e2e]

MALFORMED: list[tuple[int, bytes]] = [
    (202, b'{"id": "op_x", "state": '),  # invalid JSON (cut off)
    (200, json.dumps({"id": "op_x", "done": "yes", "steps": 7}).encode()),  # wrong types
    (202, json.dumps({"state": "RUNNING"}).encode()),  # required fields missing
    (200, json.dumps({"id": "op_x", "blob": "x" * 3_000_000}).encode()),  # huge and incomplete
    (200, b"<html>502 Bad Gateway</html>"),
]
PROBLEM_WORDS = ("malformed", "contract", "invalid", "response", "unexpected", "parse")


def test_malformed_answers_keep_the_finalizer_and_set_a_condition(
    sim: harness.SimProcess,
    operator_factory: Any,
    kube_client: Any,
    kubeconfig: Any,
    namespace: str,
    token: str,
) -> None:
    proxy = harness.CorruptingProxy(sim.base)
    proxy.start()
    try:
        by_name = chaoskit.adopt(sim, kube_client, namespace, 1)
        (name,) = by_name
        watcher = harness.Watcher(kubeconfig, namespace)
        watcher.start()
        watcher.wait_ready()
        operator = operator_factory(proxy.url)
        operator.start()
        chaoskit.wait_all_observed(watcher, 1, operator)

        proxy.corrupt(["DELETE /v1/clusters/", "/v1/operations/"], MALFORMED)
        harness.delete_all(kube_client, namespace)
        # The operation is over at the simulator after 2 s; give the operator several rounds
        # of malformed answers.
        time.sleep(8)
        assert proxy.served, "the operator asked and got malformed answers"
        assert operator.alive(), "no crash"
        current = watcher.snapshot()[name]
        assert current.deleting and harness.FINALIZER in current.finalizers, (
            "the finalizer is kept while the outcome is unknown"
        )
        messages = [
            f"{c.get('type')} {c.get('reason')} {c.get('message')}".lower()
            for c in current.status.get("conditions") or []
        ]
        assert any(any(w in m for w in PROBLEM_WORDS) for m in messages), messages
        print(f"malformed answers served: {len(proxy.served)}; conditions: {messages}")

        proxy.heal()
        chaoskit.wait_all_gone(watcher, [name], timeout=60)
        watcher.stop()
        chaoskit.assert_each_deleted_exactly_once(sim, list(by_name.values()))
        chaoskit.assert_token_nowhere(
            token, kube_client, namespace, operator.log_text(), chaoskit.statuses_text(watcher)
        )
    finally:
        proxy.stop()
