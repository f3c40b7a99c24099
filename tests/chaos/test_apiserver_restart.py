"""kube-apiserver restarted mid-flight (etcd kept): the operator recovers and finishes.

A control plane of its own (so the session's shared one is never disturbed): the deletions are
started, the API server is stopped for a couple of seconds while the operations run at the
simulator, and started again on the same port. The operator must re-establish its watches,
finish every deletion exactly once and release every finalizer.
"""

from __future__ import annotations

import time
from pathlib import Path

import chaoskit
import pytest
from chaoskit import Scale

import harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_operator_recovers_from_an_apiserver_restart(
    scale: Scale, testbin: Path, tmp_path: Path, sim: harness.SimProcess, token: str
) -> None:
    cp, _ = harness.start_control_plane(tmp_path / "cp", audit=False)
    operator = None
    try:
        api = harness.api_client(cp.kubeconfig)
        harness.apply_crd(api)
        namespace = "chaos-restart"
        harness.create_namespace(api, namespace)
        by_name = chaoskit.adopt(sim, api, namespace, scale.deletions)
        names = list(by_name)
        watcher = harness.Watcher(cp.kubeconfig, namespace)
        watcher.start()
        watcher.wait_ready()
        env = cp.env()
        env["AKUA_API_URL"] = sim.url
        env["AKUA_TOKEN"] = token
        operator = harness.ManagedOperator(
            harness.operator_argv(namespace), env, tmp_path / "operator.log"
        )
        operator.start()
        chaoskit.wait_all_observed(watcher, len(names), operator, timeout=60 + scale.deletions)

        # Every delete operation waits at its last step until approved: operations are in
        # flight at Akua for the whole outage, whatever the timing of the machine.
        chaoskit.hold_delete_operations(sim)
        harness.delete_all(api, namespace)
        watcher.wait_for(
            lambda snap: any(s.op_id for s in snap.values()), 30, "an operation in status"
        )
        following = sum(1 for s in watcher.snapshot().values() if s.op_id)
        t_down = time.time()
        cp.restart_apiserver(downtime=3.0)
        t_up = time.time()
        operations = sim.operations()
        in_flight = set(chaoskit.running_at(operations, t_down)) & set(
            chaoskit.running_at(operations, t_up)
        )
        print(
            f"API server away {t_up - t_down:.1f}s with {len(names)} deletions pending, "
            f"{following} following an operation, {len(in_flight)} operations in flight"
        )
        # The outage hit its window: objects were following operations that ran at Akua
        # across the whole outage.
        assert following > 0
        assert in_flight, operations
        assert operator.alive(), "the operator survived the API server's absence"

        chaoskit.approve_until_gone(
            sim, watcher, names, operator, timeout=120 + 2 * scale.deletions
        )
        watcher.stop()
        assert harness.list_objects(api, namespace) == []
        chaoskit.assert_each_deleted_exactly_once(sim, list(by_name.values()))
        chaoskit.assert_token_nowhere(
            token, api, namespace, operator.log_text(), chaoskit.statuses_text(watcher)
        )
    finally:
        if operator is not None:
            operator.stop()
            if operator.log_file.exists():
                print(operator.log_text()[-4000:])
        time.sleep(0.1)
        cp.stop()
