"""Two replicas sharing a kopf peering object; the ACTIVE one is SIGKILLed in turn while
deletions run, restarted, then the other one is killed, and so on.

The deletions come in waves, one per kill: a wave of AkuaClusters is deleted, and as soon as the
simulator has accepted a DELETE of that wave (the active replica is sending DELETEs and following
operations) the active replica's whole process group is SIGKILLed. It is restarted at once
(the same POD_ID: a container restarted in its pod, which re-registers with a lower priority, so
the other replica takes over at once) or, in the full run, as a new pod (a new POD_ID: the other
replica waits for the dead one's peering record to expire, 60 s at most).

Same guarantees as the single-replica kill test (exactly one delete operation and one idempotency
key per cluster, nothing left, no token anywhere), plus: at every kill exactly one replica was
active, the standby had made no Akua call and touched no AkuaCluster in its current run (its
/metrics and its log), and the kill landed in its window (a DELETE of the wave accepted, delete
operations running at the simulator).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import chaoskit
import pytest
from chaoskit import Replica, Scale

import harness

pytestmark = [pytest.mark.e2e]

PEERING = "akua-ha"


@dataclass(frozen=True)
class Plan:
    deletions: int
    kills: tuple[str, ...]  # "restart" (same POD_ID) or "replace" (a new POD_ID)
    step_seconds: float  # simulator step: a delete operation lasts 4 steps


def plan(scale: Scale) -> Plan:
    if scale.full:
        kills = ("restart", "restart", "replace", "restart", "restart", "replace", "restart")
        return Plan(deletions=50, kills=(*kills, "restart"), step_seconds=2.0)
    return Plan(deletions=10, kills=("restart", "restart", "restart"), step_seconds=1.0)


@dataclass(frozen=True)
class Kill:
    victim: str
    mode: str
    wave: int  # AkuaClusters deleted in this wave
    accepted: int  # of which the simulator had accepted a DELETE at the kill
    running: int  # delete operations running at the simulator at the kill
    following: int  # AkuaClusters with an operation id in status at the kill
    remaining: int  # AkuaClusters still there at the kill
    victim_calls: int  # Akua calls since the wave began (all the killed replica's)
    victim_objects: int  # log lines of the killed replica's run about an AkuaCluster
    standby_calls: float  # Akua calls of the standby's run (must be 0)
    standby_objects: int  # log lines of the standby's run about an AkuaCluster (must be 0)
    standby_paused: bool | None
    takeover: float  # seconds from the kill until the other replica was active
    t: float  # when the killed process was gone (epoch)


def waves(names: list[str], k: int) -> list[list[str]]:
    size, extra = divmod(len(names), k)
    out, start = [], 0
    for i in range(k):
        end = start + size + (1 if i < extra else 0)
        out.append(names[start:end])
        start = end
    return out


def delete_objects(api: Any, namespace: str, names: list[str]) -> None:
    from kubernetes import client

    objs = client.CustomObjectsApi(api)
    for name in names:
        objs.delete_namespaced_custom_object(
            harness.GROUP, harness.VERSION, namespace, harness.PLURAL, name
        )


def test_active_replica_killed_in_turn_deletes_exactly_once(
    scale: Scale,
    sim: harness.SimProcess,
    operator_factory: Any,
    kube_client: Any,
    kubeconfig: Any,
    namespace: str,
    token: str,
) -> None:
    p = plan(scale)
    t_start = time.time()
    chaoskit.apply_peering(kube_client, namespace, PEERING)
    by_name = chaoskit.adopt(sim, kube_client, namespace, p.deletions)
    names = list(by_name)
    watcher = harness.Watcher(kubeconfig, namespace)
    watcher.start()
    watcher.wait_ready()

    a = Replica(operator_factory(sim.url, "--peering-name", PEERING), "ha-a")
    b = Replica(operator_factory(sim.url, "--peering-name", PEERING), "ha-b")
    replicas = [a, b]
    # A first, alone: it becomes active. B, started later, has the lower priority and waits.
    a.operator.start()
    chaoskit.wait_active([a], timeout=60)
    b.operator.start()
    active, _ = chaoskit.wait_active(replicas, timeout=60)
    assert active is a
    standby = b
    chaoskit.wait_all_observed(watcher, len(names), a.operator, timeout=60 + p.deletions)

    sim.admin("PATCH", "/config", {"step_seconds": p.step_seconds})
    kills: list[Kill] = []
    for i, (mode, wave) in enumerate(zip(p.kills, waves(names, len(p.kills)), strict=True)):
        wave_ids = {by_name[name] for name in wave}
        seq = sim.journal_seq()
        delete_objects(kube_client, namespace, wave)
        # The window: the active replica is sending this wave's DELETEs (one is accepted).
        deadline = time.monotonic() + 60
        accepted: set[str] = set()
        while not accepted:
            assert time.monotonic() < deadline, f"kill {i + 1}: no DELETE of the wave accepted"
            time.sleep(0.02)
            accepted = chaoskit.accepted_deletes(sim.journal(since=seq), wave_ids)
        # Kill at once: the DELETEs of this wave are going out, operations are running.
        snap = watcher.snapshot()
        t_kill = time.time()
        active.operator.kill()
        t_dead = time.time()  # it may have sent one more call after t_kill, none after this
        # Until the killed replica is restarted, its peering record (highest priority, alive)
        # keeps the standby paused: what the standby shows now covers the active one's whole
        # life. Every Akua call since the wave began is the killed replica's.
        standby_calls = sum(standby.akua_requests().values())
        standby_objects = len(standby.object_lines(namespace))
        standby_paused = standby.paused()
        entries = sim.journal(since=seq)
        accepted = chaoskit.accepted_deletes(entries, wave_ids)
        running = chaoskit.running_deletes(sim)  # nobody acts now: these ran at the kill
        victim_objects = len(active.object_lines(namespace))
        if mode == "replace":
            active.set_pod_id(f"{active.name}-{i + 1}")
        active.operator.start()
        new_active, t_active = chaoskit.wait_active(replicas, timeout=120)
        assert new_active is standby, f"kill {i + 1}: the restarted replica took over"
        kills.append(
            Kill(
                victim=active.name,
                mode=mode,
                wave=len(wave),
                accepted=len(accepted),
                running=running,
                following=sum(1 for s in snap.values() if s.op_id),
                remaining=len(snap),
                victim_calls=len(entries),
                victim_objects=victim_objects,
                standby_calls=standby_calls,
                standby_objects=standby_objects,
                standby_paused=standby_paused,
                takeover=t_active - t_kill,
                t=t_dead,
            )
        )
        active, standby = standby, active

    chaoskit.wait_all_gone(watcher, names, timeout=120 + 3 * p.deletions)
    watcher.stop()
    # The last standby, too, stayed out of it while the active replica finished the work.
    final_standby_calls = sum(standby.akua_requests().values())
    final_standby_objects = len(standby.object_lines(namespace))
    final_active_calls = sum(active.akua_requests().values())  # the counter is read right

    for n, k in enumerate(kills, 1):
        print(f"kill {n}: {k}")
    journal = [e for e in sim.journal() if e["method"] == "DELETE"]
    deletes = Counter(e["status"] for e in journal)
    # Repeated DELETEs (same key, checked below): how many came after a kill that followed the
    # cluster's first DELETE (the replica taking over resends what was not recorded yet).
    first: dict[str, float] = {}
    repeats = across_kill = 0
    for e in sorted(journal, key=lambda e: e["seq"]):
        cid = e["path"].rsplit("/", 1)[-1]
        if cid not in first:
            first[cid] = e["time"]
            continue
        repeats += 1
        across_kill += any(first[cid] < k.t < e["time"] for k in kills)
    print(f"{repeats} DELETEs repeated, {across_kill} of them across a kill")
    print(
        f"{len(kills)} kills ({sum(k.mode == 'replace' for k in kills)} pod replacements), "
        f"{p.deletions} deletions, {deletes.total()} DELETEs sent {dict(deletes)}, takeovers "
        f"{[round(k.takeover, 1) for k in kills]} s, {time.time() - t_start:.0f} s in all"
    )
    for n, k in enumerate(kills, 1):
        assert k.standby_paused is True, f"kill {n}: the standby was not paused: {k}"
        assert k.standby_calls == 0, f"kill {n}: the standby called Akua: {k}"
        assert k.standby_objects == 0, f"kill {n}: the standby handled an AkuaCluster: {k}"
        assert k.victim_calls > 0 and k.victim_objects > 0, f"kill {n}: the victim was idle: {k}"
        assert k.accepted >= 1 and k.running >= 1, f"kill {n} missed its window: {k}"
    assert final_standby_calls == 0 and final_standby_objects == 0, "the last standby acted"
    assert final_active_calls > 0, "the active replica's /metrics count no Akua call"
    assert a.operator.starts + b.operator.starts == 2 + len(kills)
    assert harness.list_objects(kube_client, namespace) == []
    chaoskit.assert_each_deleted_exactly_once(sim, list(by_name.values()))
    chaoskit.assert_token_nowhere(
        token,
        kube_client,
        namespace,
        a.operator.log_text(),
        b.operator.log_text(),
        chaoskit.statuses_text(watcher),
    )
