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


# --------------------------------------------------------------------------- several replicas

PEERING_CRDS = harness.REPO_ROOT / "charts" / "akua-operator" / "crds" / "kopf-peering.yaml"


def apply_peering(api: Any, namespace: str, name: str) -> None:
    """kopf's peering CRDs from the chart (created if missing) and a KopfPeering `name` in
    `namespace`, as the chart creates them for a namespaced install."""
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api)
    for body in yaml.safe_load_all(PEERING_CRDS.read_text()):
        if not body:
            continue
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as err:
            if err.status != 409:
                raise
        deadline = time.monotonic() + 30
        while True:
            crd = ext.read_custom_resource_definition(body["metadata"]["name"])
            conds = (crd.status.conditions or []) if crd.status else []
            if any(c.type == "Established" and c.status == "True" for c in conds):
                break
            assert time.monotonic() < deadline, f"{body['metadata']['name']} not established"
            time.sleep(0.2)
    time.sleep(0.5)  # discovery lags the condition a little
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "kopf.dev",
        "v1",
        namespace,
        "kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": name}},
    )


class Replica:
    """One `akua-operator run` process of several sharing a kopf peering object.

    `pod_id` is its kopf peering identity (POD_ID, as the chart sets it from the pod name):
    restarting with the same one is a container restarted in its pod, a new one is a pod
    replaced. Its /readyz says whether peering has paused it; its /metrics count the Akua calls
    of the current run (counters start at zero with each process).
    """

    def __init__(self, operator: harness.ManagedOperator, pod_id: str) -> None:
        self.operator = operator
        self.name = pod_id
        self.set_pod_id(pod_id)
        argv = operator.argv
        self.metrics_port = int(argv[argv.index("--metrics-port") + 1])
        self.health_port = int(argv[argv.index("--health-port") + 1])

    @property
    def pod_id(self) -> str:
        return self.operator.env["POD_ID"]

    def set_pod_id(self, pod_id: str) -> None:
        self.operator.env["POD_ID"] = pod_id

    def _get(self, port: int, path: str) -> tuple[int, str] | None:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
                return rsp.status, rsp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()
        except OSError:
            return None

    def paused(self) -> bool | None:
        """kopf peering has paused this replica (True), it is active (False), or not known yet
        (not answering, or before its first look at the peering object)."""
        if not self.operator.alive():
            return None
        got = self._get(self.health_port, "/readyz")
        if got is None:
            return None
        try:
            peering = json.loads(got[1])["checks"]["peering"]
        except (ValueError, KeyError, TypeError):
            return None
        return bool(peering["paused"])

    def akua_requests(self) -> dict[tuple[str, str], float]:
        """akua_operator_api_requests_total of this run, by (endpoint, status)."""
        from prometheus_client.parser import text_string_to_metric_families

        got = self._get(self.metrics_port, "/metrics")
        assert got is not None and got[0] == 200, f"{self.name}: /metrics not served: {got}"
        out: dict[tuple[str, str], float] = {}
        for family in text_string_to_metric_families(got[1]):
            for sample in family.samples:
                if sample.name == "akua_operator_api_requests_total":
                    out[(sample.labels["endpoint"], sample.labels["status"])] = sample.value
        return out

    def run_log(self) -> str:
        """The log of the current (or last) run of the process."""
        return self.operator.log_text().rsplit("\n===== start #", 1)[-1]

    def object_lines(self, namespace: str) -> list[str]:
        """Log lines of the current run about an AkuaCluster of `namespace` (kopf prefixes
        everything a handler logs, and its own 'Handler ... succeeded', with [ns/name])."""
        return [line for line in self.run_log().splitlines() if f"[{namespace}/" in line]


def wait_active(replicas: list[Replica], timeout: float) -> tuple[Replica, float]:
    """Wait until exactly one live replica is active and every other one is paused; returns it
    and the time (epoch) it was seen so."""
    deadline = time.monotonic() + timeout
    states: list[bool | None] = []
    while time.monotonic() < deadline:
        for r in replicas:
            assert r.operator.alive(), f"{r.name} exited:\n{r.operator.log_text()[-3000:]}"
        states = [r.paused() for r in replicas]
        if states.count(False) == 1 and states.count(True) == len(replicas) - 1:
            return replicas[states.index(False)], time.time()
        time.sleep(0.05)
    raise TimeoutError(f"no single active replica within {timeout:.0f}s: paused={states}")


def accepted_deletes(entries: list[dict[str, Any]], cluster_ids: set[str]) -> set[str]:
    """Clusters (of `cluster_ids`) with a DELETE the simulator accepted (202) in `entries`."""
    return {
        entry["path"].rsplit("/", 1)[-1]
        for entry in entries
        if entry["method"] == "DELETE"
        and entry["status"] == 202
        and entry["path"].rsplit("/", 1)[-1] in cluster_ids
    }


def running_deletes(sim: harness.SimProcess) -> int:
    return sum(
        1 for op in sim.operations() if op["type"] == "cluster.delete" and op["state"] == "RUNNING"
    )
