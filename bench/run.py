"""The deletion benchmark: N AkuaClusters deleted at once, operations lasting D seconds.

    uv run --frozen --no-sync python bench/run.py --n 100 --duration 10 [--baseline]

Starts the real control plane (hack/controlplane.py, with an audit log), the Akua simulator
(every step lasts D/4 seconds, so a deletion takes D) and the operator as a subprocess
(`akua-operator run --namespace NS`, as users run it). It seeds N clusters in the simulator,
creates N AkuaClusters adopting them (spec.clusterId), waits until every one is observed, deletes
them all with one DELETE of the collection, and measures:

- release delay: from each operation's end at the simulator (its exact, float completion time)
  to the moment its AkuaCluster disappears (the finalizer released), seen by a watch;
- step delay: from each step's transition at the simulator (running, completed) to its first
  appearance in status.operation.steps;
- total wall time against D; Akua API calls per operation by endpoint (the simulator's journal);
  Kubernetes API writes per deletion (the API server's audit log, the operator's own identity);
- the operator's peak RSS and CPU seconds (psutil, the whole process tree);
- the simulator's 429s: by default the simulator limits at the operator's own rate
  (`--api-rate`/`--api-burst`, 20/40, given to both; `--api-rate 0` turns both off), so a 429
  is a call the operator's budget should not have sent: a miss;
- the operator's own `akua_operator_tracker_*` and `akua_operator_budget_*` series, scraped from
  its /metrics at the end of the wave.

With --baseline it first runs the same N through bench/baseline_operator.py (kopf, finalizer
only) and reports our cost as a ratio to it. Prints a table and writes bench/results/*.json.
Everything is on loopback; every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # bench/, put on the path just above

RESULTS = Path(__file__).resolve().parent / "results"
STATUS_RANK = {"pending": 0, "running": 1, "completed": 2, "failed": 2, "skipped": 2}
MIB = 1024 * 1024
#: Operator metrics copied into the result JSON (scraped at the end of the wave).
SCRAPED_PREFIXES = ("akua_operator_tracker_", "akua_operator_budget_")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def observed_ours(seen: harness.Seen) -> bool:
    return harness.FINALIZER in seen.finalizers and bool(seen.status.get("etag"))


def observed_baseline(seen: harness.Seen) -> bool:
    return harness.FINALIZER in seen.finalizers


# --------------------------------------------------------------------------- one run


def run_mode(
    mode: str,
    *,
    n: int,
    duration: float,
    cp: Any,
    api: Any,
    audit_log: Path,
    sim: harness.SimProcess | None,
    workdir: Path,
    timeout: float,
    operator_args: list[str],
) -> dict[str, Any]:
    """Run one deletion wave (mode "akua" or "baseline") and return its raw measurements."""
    ns = f"bench-{mode}-{n}-{secrets.token_hex(2)}"
    harness.create_namespace(api, ns)
    kubeconfig, user = harness.service_account_kubeconfig(
        cp, api, ns, f"{mode}-operator", workdir / f"{ns}.kubeconfig"
    )
    names = [f"c{i:05d}" for i in range(n)]
    if sim is not None:
        log(f"{mode}: seeding {n} clusters in the simulator")
        cluster_ids = sim.seed_clusters(names)
    else:
        cluster_ids = [f"clu_baseline{i:05d}" for i in range(n)]
    by_name = dict(zip(names, cluster_ids, strict=True))

    watcher = harness.Watcher(cp.kubeconfig, ns)
    watcher.start()
    watcher.wait_ready()

    env = cp.env()
    env["KUBECONFIG"] = str(kubeconfig)
    if mode == "akua":
        assert sim is not None
        env["AKUA_API_URL"] = sim.url
        env["AKUA_TOKEN"] = sim.token
        argv = harness.operator_argv(ns, operator_args)
    else:
        argv = harness.baseline_argv(ns)
    operator = harness.ManagedOperator(argv, env, workdir / f"{ns}-operator.log")
    t_start = time.time()
    operator.start()

    log(f"{mode}: creating {n} AkuaClusters in {ns}")
    harness.create_objects(
        api,
        ns,
        (harness.akua_cluster(name, by_name[name], index=i) for i, name in enumerate(names)),
    )
    t_created = time.time()
    predicate = observed_ours if mode == "akua" else observed_baseline

    def all_observed(snap: dict[str, harness.Seen]) -> bool:
        if not operator.alive():
            raise RuntimeError(f"the {mode} operator exited")
        return len(snap) == n and all(predicate(s) for s in snap.values())

    try:
        t_observed = watcher.wait_for(
            all_observed,
            timeout=timeout,
            what=f"{n} AkuaClusters observed by the {mode} operator",
        )
    except (TimeoutError, RuntimeError):
        operator.stop()
        watcher.stop()
        log(f"{mode}: operator log tail:\n{operator.log_text()[-3000:]}")
        raise
    log(f"{mode}: all observed {t_observed - t_created:.1f}s after creation; settling")
    time.sleep(min(5.0, 1.0 + n / 200))
    usage_before = operator.mark()
    journal_seq = sim.journal_seq() if sim is not None else 0

    metrics_port = harness.metrics_port_of(argv) if mode == "akua" else None
    log(f"{mode}: deleting all {n} at once")
    t0 = time.time()
    harness.delete_all(api, ns, n)
    deadline = timeout + duration
    try:
        watcher.wait_for(
            lambda snap: len(snap) == 0 and len(watcher.gone) >= n,
            timeout=deadline,
            what=f"{n} AkuaClusters gone",
            poll=0.05,
        )
        finished = True
    except TimeoutError as err:
        log(f"{mode}: {err}")
        finished = False
    t_end = max(watcher.gone.values()) if watcher.gone else time.time()
    usage_after = operator.mark()
    scraped: dict[str, float] | str | None = None
    if metrics_port is not None and operator.alive():
        scraped = harness.scrape_metrics(metrics_port, SCRAPED_PREFIXES)
    exit_code = operator.stop()
    watcher.stop()
    time.sleep(1.0)  # let the audit log flush the last writes

    audit = [e for e in harness.read_audit(audit_log) if e.user == user]
    result: dict[str, Any] = {
        "mode": mode,
        "namespace": ns,
        "n": n,
        "finished": finished,
        "left": sorted(set(names) - set(watcher.gone)),
        "operator_exit_code": exit_code,
        "t_start": t_start,
        "t_created": t_created,
        "t_observed": t_observed,
        "t0": t0,
        "t_end": t_end,
        "names": by_name,
        "gone": dict(watcher.gone),
        "usage": {
            "peak_rss_bytes": max(u.peak_rss for u in operator.usages),
            "cpu_seconds_total": usage_after.cpu_seconds,
            "cpu_seconds_deletion": usage_after.cpu_seconds - usage_before.cpu_seconds,
            "cpu_seconds_before_deletion": usage_before.cpu_seconds,
        },
        "k8s_writes_observe": harness.count_by(e.key for e in audit if e.time < t0),
        "k8s_writes_deletion": harness.count_by(e.key for e in audit if e.time >= t0),
        "k8s_writes_deletion_detail": harness.count_by(
            e.detailed_key for e in audit if e.time >= t0
        ),
        "k8s_write_errors": harness.count_by(
            f"{e.detailed_key} {e.code}" for e in audit if e.code >= 400
        ),
        "k8s_write_error_messages": harness.count_by(
            f"{e.detailed_key} {e.code}: {e.message}" for e in audit if e.code >= 400
        ),
        "watch_errors": watcher.errors[:20],
        "operator_metrics": scraped,
        "watch_lines": watch_lines(watcher.seen, t0),
    }
    if sim is not None:
        result["journal"] = [e for e in sim.journal() if e["seq"] > 0]
        result["journal_seq_at_t0"] = journal_seq
        ops = [
            op
            for op in sim.operations()
            if op["type"] == "cluster.delete" and op["cluster_id"] in set(cluster_ids)
        ]
        result["operations"] = ops
        result["seen"] = [
            (s.t, s.name, s.op_id, list(s.steps)) for s in watcher.seen if s.op_id is not None
        ]
    result["log_tail"] = operator.log_text()[-4000:]
    return result


def _columns(seen: harness.Seen) -> tuple[Any, ...]:
    """What `kubectl get akc` prints for an object (the default printer columns, Age aside)."""
    status = seen.status
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    return (
        status.get("clusterId"),
        status.get("state"),
        status.get("progress"),
        ready.get("status"),
        ready.get("reason"),
    )


def watch_lines(seen: list[harness.Seen], t0: float) -> dict[str, Any]:
    """What `kubectl get akc -w` shows during the deletion wave: MODIFIED events per object,
    how many print the same columns as the object's previous line, and the STATE column's
    values on objects that are being deleted."""
    last: dict[str, tuple[Any, ...]] = {}
    modified = identical = 0
    states: dict[str, int] = {}
    for s in seen:
        columns = _columns(s)
        if s.t >= t0 and s.type == "MODIFIED":
            modified += 1
            identical += int(last.get(s.name) == columns)
            if s.deleting:
                key = str(s.status.get("state"))
                states[key] = states.get(key, 0) + 1
        last[s.name] = columns
    return {"modified": modified, "identical_to_previous": identical, "deleting_states": states}


# --------------------------------------------------------------------------- analysis


def analyse(raw: dict[str, Any], duration: float) -> dict[str, Any]:
    n = raw["n"]
    t0 = raw["t0"]
    out: dict[str, Any] = {
        "mode": raw["mode"],
        "n": n,
        "finished": raw["finished"],
        "left": len(raw["left"]),
        "wall_seconds": raw["t_end"] - t0,
        "observe_seconds": raw["t_observed"] - raw["t_created"],
        "peak_rss_mib": raw["usage"]["peak_rss_bytes"] / MIB,
        "cpu_seconds_total": raw["usage"]["cpu_seconds_total"],
        "cpu_seconds_deletion": raw["usage"]["cpu_seconds_deletion"],
    }
    writes = raw["k8s_writes_deletion"]
    out["k8s_writes_per_deletion"] = sum(writes.values()) / n
    out["k8s_writes_per_deletion_by_kind"] = {k: v / n for k, v in writes.items()}
    detail = raw.get("k8s_writes_deletion_detail") or {}
    out["k8s_writes_per_deletion_detail"] = {k: v / n for k, v in sorted(detail.items())}
    out["k8s_writes_per_object_observe"] = sum(raw["k8s_writes_observe"].values()) / n
    out["k8s_write_errors"] = raw["k8s_write_errors"]
    out["k8s_write_error_messages"] = raw.get("k8s_write_error_messages") or {}
    if raw.get("operator_metrics") is not None:
        out["operator_metrics"] = raw["operator_metrics"]
    lines = raw.get("watch_lines") or {}
    if lines:
        out["watch_lines_per_deletion"] = lines["modified"] / n
        out["watch_lines_identical_per_deletion"] = lines["identical_to_previous"] / n
        out["watch_state_while_deleting"] = lines["deleting_states"]
    gone = raw["gone"]
    if raw["mode"] == "baseline":
        out["release_after_delete_seconds"] = harness.summary([t - t0 for t in gone.values()])
        return out

    ops_by_cluster: dict[str, list[dict[str, Any]]] = {}
    for op in raw["operations"]:
        ops_by_cluster.setdefault(op["cluster_id"], []).append(op)
    final_op: dict[str, dict[str, Any]] = {}
    duplicates = 0
    for name, cluster_id in raw["names"].items():
        ops = sorted(ops_by_cluster.get(cluster_id, []), key=lambda o: o["started_at"])
        duplicates += max(0, len(ops) - 1)
        if ops:
            final_op[name] = ops[-1]
    out["delete_operations"] = sum(len(v) for v in ops_by_cluster.values())
    out["clusters_with_more_than_one_delete"] = sum(
        1 for v in ops_by_cluster.values() if len(v) > 1
    )

    # Release delay: operation end at the simulator -> object gone.
    release = [
        gone[name] - op["completed_at"]
        for name, op in final_op.items()
        if name in gone and op.get("completed_at") is not None
    ]
    out["release_delay_seconds"] = harness.summary(release)
    out["released_before_operation_end"] = sum(1 for d in release if d < 0)
    out["delete_operation_states"] = harness.count_by(op["state"] for op in final_op.values())
    starts = [op["started_at"] for op in final_op.values()]
    ends = [op["completed_at"] for op in final_op.values() if op.get("completed_at")]
    out["first_delete_accepted_after_seconds"] = min(starts) - t0 if starts else None
    out["last_delete_accepted_after_seconds"] = max(starts) - t0 if starts else None
    out["last_operation_end_after_seconds"] = max(ends) - t0 if ends else None
    out["wall_minus_duration_seconds"] = out["wall_seconds"] - duration

    # Step delay: each transition at the simulator -> first status showing it (or later).
    seen_by_op: dict[str, list[tuple[float, list[tuple[str, str]]]]] = {}
    for t, _name, op_id, steps in raw["seen"]:
        seen_by_op.setdefault(op_id, []).append((t, steps))
    step_delays: list[float] = []
    missed = 0
    for op in final_op.values():
        history = sorted(seen_by_op.get(op["id"], []), key=lambda h: h[0])
        for i, step in enumerate(op["steps"]):
            for target, sim_time in (
                ("running", step["started_at"]),
                ("completed", step["completed_at"]),
            ):
                if sim_time is None:
                    continue
                shown = next(
                    (
                        t
                        for t, steps in history
                        if i < len(steps)
                        and STATUS_RANK.get(steps[i][1], -1) >= STATUS_RANK[target]
                    ),
                    None,
                )
                if shown is None:
                    missed += 1
                else:
                    step_delays.append(shown - sim_time)
    out["step_delay_seconds"] = harness.summary(step_delays)
    out["step_transitions_not_shown"] = missed

    # Akua API calls during the deletion wave.
    journal = [e for e in raw["journal"] if t0 <= e["time"] <= raw["t_end"] + 1]
    by_endpoint = harness.count_by(harness.endpoint_of(e) for e in journal)
    out["akua_calls_total"] = len(journal)
    out["akua_calls_per_operation"] = len(journal) / n
    out["akua_calls_per_operation_by_endpoint"] = {k: v / n for k, v in by_endpoint.items()}
    out["akua_calls_by_status"] = harness.count_by(str(e["status"]) for e in journal)
    # The simulator's 429s over the whole run (observation included): each is a miss when the
    # simulator limits at the operator's own rate.
    out["akua_429s"] = sum(1 for e in raw["journal"] if e.get("status") == 429)
    out["akua_429s_during_deletion"] = sum(1 for e in journal if e.get("status") == 429)
    running_seconds = sum(
        (op["completed_at"] or raw["t_end"]) - op["started_at"] for op in final_op.values()
    )
    polls = [e for e in journal if e["method"] != "DELETE"]
    out["akua_calls_per_5s_per_running_operation"] = (
        len(journal) / (running_seconds / 5) if running_seconds else None
    )
    out["akua_polls_per_5s_per_running_operation"] = (
        len(polls) / (running_seconds / 5) if running_seconds else None
    )
    # Calls about operations (GET /operations, GET /operations/{id}, :wait; not the DELETEs that
    # start them) per running operation per 5 s: what following the operations costs.
    about_operations = [
        e for e in journal if e["method"] != "DELETE" and e["path"].startswith("/operations")
    ]
    out["akua_operation_calls_total"] = len(about_operations)
    out["akua_operation_calls_per_5s_per_running_operation"] = (
        len(about_operations) / (running_seconds / 5) if running_seconds else None
    )
    out["operation_running_seconds_total"] = running_seconds
    times = sorted(e["time"] for e in raw["journal"])
    out["akua_max_calls_in_1s"] = _max_in_window(times, 1.0)
    out["akua_max_calls_in_10s"] = _max_in_window(times, 10.0)
    out["akua_calls_observe_per_object"] = len([e for e in raw["journal"] if e["time"] < t0]) / n
    return out


def _max_in_window(times: list[float], window: float) -> int:
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] < t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# --------------------------------------------------------------------------- report


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(ours: dict[str, Any], base: dict[str, Any] | None, duration: float) -> str:
    rows: list[tuple[str, str, str]] = []

    def row(label: str, value: Any, target: str = "") -> None:
        rows.append((label, _fmt(value), target))

    rel = ours["release_delay_seconds"]
    step = ours["step_delay_seconds"]
    row("N / D (s)", f"{ours['n']} / {duration:g}")
    row("all deleted", f"{ours['finished']} (left {ours['left']})")
    row("release delay p50 (s)", rel["p50"], "<= 1")
    row("release delay p95 (s)", rel["p95"], "<= 3")
    row("release delay max (s)", rel["max"])
    row("step delay p50 (s)", step["p50"])
    row("step delay p95 (s)", step["p95"], "<= 5")
    row("step transitions not shown", ours["step_transitions_not_shown"])
    row("wall time (s)", ours["wall_seconds"], f"<= D + 30 = {duration + 30:g}")
    row("last DELETE accepted after (s)", ours["last_delete_accepted_after_seconds"])
    row("delete operations (dupes)", f"{ours['delete_operations']}")
    row("Akua calls / operation", ours["akua_calls_per_operation"])
    for endpoint, value in ours["akua_calls_per_operation_by_endpoint"].items():
        row(f"  {endpoint}", value)
    row("Akua polls / 5 s / running op", ours["akua_polls_per_5s_per_running_operation"], "<= 1")
    row("Akua calls / 5 s / running op", ours["akua_calls_per_5s_per_running_operation"])
    row(
        "Akua calls about ops / 5 s / running op",
        ours["akua_operation_calls_per_5s_per_running_operation"],
    )
    row("Akua max calls in 1 s", ours["akua_max_calls_in_1s"])
    limit = ours.get("server_rate_limit")
    row(
        "Akua 429s (run / deletion)",
        f"{ours['akua_429s']} / {ours['akua_429s_during_deletion']}",
        f"0 (server limit {limit})" if limit else "n/a (server limit off)",
    )
    row("K8s writes / deletion", ours["k8s_writes_per_deletion"])
    for kind, value in ours["k8s_writes_per_deletion_by_kind"].items():
        row(f"  {kind}", value)
    for kind, value in ours.get("k8s_writes_per_deletion_detail", {}).items():
        row(f"    {kind}", value)
    row("K8s write errors (k8s_write_errors)", json.dumps(ours["k8s_write_errors"]), "{}")
    if "watch_lines_per_deletion" in ours:
        row("watch lines / deletion", ours["watch_lines_per_deletion"])
        row("  identical to the previous", ours["watch_lines_identical_per_deletion"], "0")
        row("  STATE while deleting", json.dumps(ours["watch_state_while_deleting"]))
    row("peak RSS (MiB)", ours["peak_rss_mib"], "< 200 at N=1000")
    metrics = ours.get("operator_metrics")
    if isinstance(metrics, dict):
        for series, value in sorted(metrics.items()):
            if series.startswith("akua_operator_tracker_"):
                row(f"  {series}", value)
    elif metrics is not None:
        row("operator /metrics", str(metrics))
    row(
        "CPU s (deletion / total)",
        f"{ours['cpu_seconds_deletion']:.2f} / {ours['cpu_seconds_total']:.2f}",
    )
    if base is not None:
        rows.append(("--- baseline (kopf, finalizer only)", "", ""))
        brel = base["release_after_delete_seconds"]
        row("release after DELETE p50/p95 (s)", f"{_fmt(brel['p50'])} / {_fmt(brel['p95'])}")
        row("wall time (s)", base["wall_seconds"])
        row("K8s writes / deletion", base["k8s_writes_per_deletion"])
        row("peak RSS (MiB)", base["peak_rss_mib"])
        row(
            "CPU s (deletion / total)",
            f"{base['cpu_seconds_deletion']:.2f} / {base['cpu_seconds_total']:.2f}",
        )
        rows.append(("--- ours / baseline", "", ""))
        for label, key in (
            ("peak RSS", "peak_rss_mib"),
            ("CPU s (deletion)", "cpu_seconds_deletion"),
            ("CPU s (total)", "cpu_seconds_total"),
            ("K8s writes / deletion", "k8s_writes_per_deletion"),
        ):
            row(label, ours[key] / base[key] if base[key] else None)
    width = max(len(r[0]) for r in rows) + 2
    vwidth = max(len(r[1]) for r in rows) + 2
    lines = [f"{'metric':<{width}}{'value':<{vwidth}}target"]
    lines += [f"{a:<{width}}{b:<{vwidth}}{c}" for a, b, c in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100, help="AkuaClusters deleted at once")
    parser.add_argument("--duration", type=float, default=10.0, help="D: seconds per operation")
    parser.add_argument("--baseline", action="store_true", help="also run the kopf baseline")
    parser.add_argument(
        "--baseline-only", action="store_true", help="run only the kopf baseline (no operator)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of each wait (s)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default: results/)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs here")
    parser.add_argument("--raw", action="store_true", help="include raw journal/watch in JSON")
    parser.add_argument(
        "--operator-arg", action="append", default=[], help="extra `akua-operator run` argument"
    )
    parser.add_argument(
        "--api-rate",
        type=float,
        default=20.0,
        help="the operator's --api-rate AND the simulator's server-side limit (req/s);\n"
        "0 turns both off",
    )
    parser.add_argument(
        "--api-burst",
        type=int,
        default=40,
        help="the operator's --api-burst AND the simulator's server-side burst",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.n <= 5000:
        parser.error("--n must be between 1 and 5000")
    if not 0 < args.duration <= 600:
        parser.error("--duration must be in (0, 600] seconds")
    if not 0 < args.timeout <= 3600:
        parser.error("--timeout must be in (0, 3600] seconds")
    if args.api_rate < 0 or args.api_burst < 1:
        parser.error("--api-rate must be >= 0 and --api-burst >= 1")
    operator_args = [
        "--api-rate",
        f"{args.api_rate:g}",
        "--api-burst",
        str(args.api_burst),
        *args.operator_arg,  # given last, so an explicit --operator-arg wins
    ]
    server_limit = (
        {"rate_limit_rps": args.api_rate, "rate_limit_burst": args.api_burst}
        if args.api_rate > 0
        else None
    )

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="akua-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"work directory {workdir}")
    cp, audit_log = harness.start_control_plane(workdir)
    assert audit_log is not None
    sim = harness.SimProcess(
        workdir / "sim",
        token=f"sk_akua_bench_{secrets.token_hex(8)}",
        step_seconds=args.duration / 4,
    )
    results: dict[str, Any] = {
        "n": args.n,
        "duration": args.duration,
        "step_seconds": args.duration / 4,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "operator_args": operator_args,
        "server_rate_limit": server_limit,
        "commit": _git_commit(),
    }
    try:
        api = harness.api_client(cp.kubeconfig)
        harness.apply_crd(api)
        sim.start()
        if server_limit is not None:  # before any operator starts: its first call is limited
            sim.set_faults(**server_limit)
        base = None
        common = {
            "n": args.n,
            "duration": args.duration,
            "cp": cp,
            "api": api,
            "audit_log": audit_log,
            "workdir": workdir,
            "timeout": args.timeout,
            "operator_args": operator_args,
        }
        if args.baseline or args.baseline_only:
            raw_base = run_mode("baseline", sim=None, **common)
            base = analyse(raw_base, args.duration)
            results["baseline"] = base
            if args.raw:
                results["baseline_raw"] = raw_base
        if args.baseline_only:
            assert base is not None
            print(json.dumps(base, indent=2, default=str))
        else:
            raw = run_mode("akua", sim=sim, **common)
            ours = analyse(raw, args.duration)
            if sim.sampler is not None:
                ours["simulator_cpu_seconds"] = sim.sampler.usage.cpu_seconds
            ours["server_rate_limit"] = (
                f"{args.api_rate:g}/s, burst {args.api_burst}" if server_limit else None
            )
            results["akua"] = ours
            results["operator_log_tail"] = raw["log_tail"]
            if args.raw:
                results["akua_raw"] = {k: v for k, v in raw.items() if k != "log_tail"}
            if base is not None:
                results["ratio_to_baseline"] = {
                    key: (ours[key] / base[key] if base[key] else None)
                    for key in (
                        "peak_rss_mib",
                        "cpu_seconds_deletion",
                        "cpu_seconds_total",
                        "k8s_writes_per_deletion",
                    )
                }
            print(table(ours, base, args.duration))
    finally:
        sim.stop()
        cp.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    out = (
        args.out or RESULTS / f"n{args.n}-d{args.duration:g}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    )
    out.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    log(f"wrote {out}")
    final = results.get("akua") or results.get("baseline") or {}
    return 0 if final.get("finished") else 1


if __name__ == "__main__":
    sys.exit(main())
