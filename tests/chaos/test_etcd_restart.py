"""etcd stopped under load (kube-apiserver kept running) and started again on its data.

A control plane of its own (the session's shared one is never disturbed). While deletions run
and the operator follows their operations, etcd is SIGKILLed (or, in the full run, also stopped
with SIGTERM), kept down for a few seconds, and started again with the same command line and data
directory (`ControlPlane.restart_etcd`). While it is down the API server cannot serve a quorum
read (checked); afterwards it is ready again, reads and writes work, and the operator finishes
every deletion exactly once and releases every finalizer; no token leaks.
"""

from __future__ import annotations

import time
from pathlib import Path

import chaoskit
import pytest
from chaoskit import Scale

import harness

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

DOWNTIME = 4.0


def quorum_read_fails(kubeconfig: Path) -> str | None:
    """One quorum read (a list without resourceVersion, which needs etcd), 2 s to answer and no
    retry; what went wrong, or None if it was served."""
    from kubernetes import client, config

    conf = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=conf)
    conf.retries = 0
    with client.ApiClient(conf) as api:
        try:
            client.CoreV1Api(api).list_namespace(_request_timeout=2)
        except Exception as err:  # any failure (a timeout, a 5xx) is the expected outcome
            cause = getattr(err, "reason", None)  # urllib3's MaxRetryError wraps the cause
            return type(cause if isinstance(cause, Exception) else err).__name__
    return None


def test_operator_recovers_from_an_etcd_restart(
    scale: Scale, testbin: Path, tmp_path: Path, sim: harness.SimProcess, token: str
) -> None:
    n = 50 if scale.full else 10
    restarts = (True, False, True) if scale.full else (True,)  # SIGKILL, SIGTERM, SIGKILL
    cp, _ = harness.start_control_plane(tmp_path / "cp", audit=False)
    operator = None
    try:
        api = harness.api_client(cp.kubeconfig)
        harness.apply_crd(api)
        namespace = "chaos-etcd"
        harness.create_namespace(api, namespace)
        by_name = chaoskit.adopt(sim, api, namespace, n)
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
        chaoskit.wait_all_observed(watcher, len(names), operator, timeout=60 + n)

        # Operations of 4 steps outlast every outage: the operator must follow them across.
        sim.admin("PATCH", "/config", {"step_seconds": 10.0 if scale.full else 2.0})
        harness.delete_all(api, namespace)
        watcher.wait_for(
            lambda snap: any(s.op_id for s in snap.values()), 30, "an operation in status"
        )
        figures = []
        for kill in restarts:
            running = chaoskit.running_deletes(sim)
            remaining = len(watcher.snapshot())
            following = sum(1 for s in watcher.snapshot().values() if s.op_id)
            t_down = time.time()
            cp.stop_etcd(kill=kill)
            failure = quorum_read_fails(cp.kubeconfig)
            chaoskit.sleep_until(t_down + DOWNTIME)
            t_up = time.time()
            back = cp.start_etcd_again()
            figures.append(
                f"etcd {'SIGKILL' if kill else 'SIGTERM'}: down {t_up - t_down:.1f}s"
                f", API server ready {back:.1f}s after etcd's start; at the stop {remaining} "
                f"AkuaClusters left, {following} following an operation, {running} delete "
                f"operations running; quorum read while down: {failure}"
            )
            print(figures[-1])
            assert failure is not None, "the API server served a quorum read without etcd"
            assert running > 0 and remaining > 0, "etcd must go away while deletions run"
            assert operator.alive(), "the operator survived etcd's absence"
            # The API server is back for reads and writes.
            assert quorum_read_fails(cp.kubeconfig) is None
            harness.create_namespace(api, f"after-etcd-{len(figures)}")

        chaoskit.wait_all_gone(watcher, names, timeout=120 + 3 * n)
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
