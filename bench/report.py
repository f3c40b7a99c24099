"""Render bench/results/*.json as the Markdown tables of docs/performance.md.

uv run --frozen --no-sync python bench/report.py bench/results/n100-d10-*.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def load(paths: list[str]) -> list[dict[str, Any]]:
    runs = [json.loads(Path(p).read_text()) | {"file": Path(p).name} for p in paths]
    return sorted(runs, key=lambda r: (r["duration"], r["n"]))


def main_table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| N | D (s) | all deleted | release p50 / p95 / max (s) | step p50 / p95 (s) "
        "| wall (s) | wall - D (s) | last DELETE accepted at (s) | delete ops |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in runs:
        a = r["akua"]
        rel, step = a["release_delay_seconds"], a["step_delay_seconds"]
        lines.append(
            f"| {r['n']} | {r['duration']:g} | {a['finished']} ({a['left']} left) "
            f"| {_f(rel['p50'])} / {_f(rel['p95'])} / {_f(rel['max'])} "
            f"| {_f(step['p50'])} / {_f(step['p95'])} "
            f"| {_f(a['wall_seconds'], 1)} | {_f(a['wall_minus_duration_seconds'], 1)} "
            f"| {_f(a['last_delete_accepted_after_seconds'], 1)} | {a['delete_operations']} |"
        )
    return "\n".join(lines)


def api_table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| N | D (s) | Akua calls / op | by endpoint (per op) | polls / 5 s / running op "
        "| all calls / 5 s / running op | max calls in 1 s / 10 s |"
    )
    lines = [head, "|" + "---|" * 7]
    for r in runs:
        a = r["akua"]
        by = ", ".join(
            f"`{k}` {v:.2f}" for k, v in a["akua_calls_per_operation_by_endpoint"].items()
        )
        lines.append(
            f"| {r['n']} | {r['duration']:g} | {_f(a['akua_calls_per_operation'])} | {by} "
            f"| {_f(a.get('akua_polls_per_5s_per_running_operation'))} "
            f"| {_f(a['akua_calls_per_5s_per_running_operation'])} "
            f"| {a['akua_max_calls_in_1s']} / {a['akua_max_calls_in_10s']} |"
        )
    return "\n".join(lines)


def cost_table(runs: list[dict[str, Any]]) -> str:
    head = (
        "| N | D (s) | K8s writes / deletion (ours) | by kind | baseline | ratio "
        "| peak RSS MiB (ours / baseline) | CPU s deletion (ours / baseline) "
        "| CPU s total (ours / baseline) |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in runs:
        a, b = r["akua"], r.get("baseline") or {}
        kinds = ", ".join(f"{k} {v:.1f}" for k, v in a["k8s_writes_per_deletion_by_kind"].items())
        ratio = (
            a["k8s_writes_per_deletion"] / b["k8s_writes_per_deletion"]
            if b.get("k8s_writes_per_deletion")
            else None
        )
        lines.append(
            f"| {r['n']} | {r['duration']:g} | {_f(a['k8s_writes_per_deletion'], 1)} | {kinds} "
            f"| {_f(b.get('k8s_writes_per_deletion'), 1)} | {_f(ratio, 1)} "
            f"| {_f(a['peak_rss_mib'], 0)} / {_f(b.get('peak_rss_mib'), 0)} "
            f"| {_f(a['cpu_seconds_deletion'])} / {_f(b.get('cpu_seconds_deletion'))} "
            f"| {_f(a['cpu_seconds_total'])} / {_f(b.get('cpu_seconds_total'))} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    runs = [r for r in load(argv) if "akua" in r]
    print("### Latency and wall time\n")
    print(main_table(runs))
    print("\n### Akua API calls\n")
    print(api_table(runs))
    print("\n### Kubernetes writes, memory and CPU, against the kopf baseline\n")
    print(cost_table(runs))
    print("\nFiles: " + ", ".join(f"`bench/results/{r['file']}`" for r in runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
