"""What ``kubectl akua`` prints: the story of an AkuaCluster, from its status and Events.

Pure: an object (as the API server returns it), its Events and the time in; text out (through
``rich``: colours and a progress bar on a terminal, plain text when piped). Nothing here
decides what a resource waits for: ``status.waitingFor`` and the conditions' messages are the
core's words, shown as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from akua_operator.resource.models import (
    ANNOTATION_ORPHAN,
    ANNOTATION_RETRY,
    AkuaClusterSpec,
    AkuaClusterStatus,
    Condition,
    ConditionStatus,
    OperationStatus,
)

DONE_STEPS = ("completed", "skipped")
STEP_MARK = {"completed": "✓", "skipped": "-", "running": "▶", "failed": "✗", "pending": "·"}
STEP_STYLE = {"completed": "green", "skipped": "dim", "running": "bold yellow", "failed": "red"}
EVENT_LIMIT = 8


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(seconds: float) -> str:
    """``4m12s``, ``2h3m``, ``3d4h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def ago(text: str | None, now: datetime) -> str:
    moment = parse_time(text)
    return f"{duration((now - moment).total_seconds())} ago" if moment else "-"


def clock(text: str | None) -> str:
    moment = parse_time(text)
    return moment.astimezone(UTC).strftime("%H:%M:%S") if moment else ""


@dataclass(frozen=True)
class View:
    """An AkuaCluster read through the operator's models."""

    name: str
    namespace: str
    uid: str
    annotations: dict[str, str]
    deletion_timestamp: str | None
    spec: AkuaClusterSpec
    status: AkuaClusterStatus

    @classmethod
    def of(cls, obj: dict[str, Any]) -> View:
        meta = obj.get("metadata", {})
        try:
            spec = AkuaClusterSpec.model_validate(obj.get("spec") or {})
        except ValueError:
            spec = AkuaClusterSpec()
        try:
            status = AkuaClusterStatus.model_validate(obj.get("status") or {})
        except ValueError:
            status = AkuaClusterStatus()
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            uid=str(meta.get("uid", "")),
            annotations=dict(meta.get("annotations") or {}),
            deletion_timestamp=meta.get("deletionTimestamp"),
            spec=spec,
            status=status,
        )

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.status.conditions if c.type == type_), None)

    @property
    def cluster_id(self) -> str | None:
        return self.spec.cluster_id or self.status.cluster_id

    @property
    def stalled(self) -> Condition | None:
        c = self.condition("Stalled")
        return c if c is not None and c.status == ConditionStatus.TRUE else None

    def phase(self) -> str:
        """A one-word summary from the conditions (what ``list`` shows)."""
        stalled = self.stalled
        if stalled is not None:
            return f"Stalled/{stalled.reason}"
        if self.deletion_timestamp:
            return "Deleting"
        ready = self.condition("Ready")
        if ready is not None and ready.status == ConditionStatus.TRUE:
            return "Ready"
        reconciling = self.condition("Reconciling")
        if reconciling is not None and reconciling.status == ConditionStatus.TRUE:
            return reconciling.reason
        return ready.reason if ready is not None else "Pending"

    def held_for(self, now: datetime) -> str:
        moment = parse_time(self.deletion_timestamp)
        return duration((now - moment).total_seconds()) if moment else ""


def step_counts(op: OperationStatus) -> tuple[int, int]:
    """(finished, total) steps, counting steps not mirrored."""
    offset = op.steps_offset or 0
    total = len(op.steps) + (op.steps_omitted or 0)
    finished = sum(1 for s in op.steps if s.status in DONE_STEPS)
    if op.steps_omitted:
        finished += offset
    return finished, total


def what_to_do(view: View) -> list[str]:
    """The core's own words on the way out (the Stalled or Reconciling message), with the
    plugin commands that set the annotations they name."""
    lines: list[str] = []
    stalled = view.stalled
    reconciling = view.condition("Reconciling")
    if stalled is not None and stalled.message:
        lines.append(stalled.message)
    elif (
        reconciling is not None
        and reconciling.status == ConditionStatus.TRUE
        and reconciling.message
        and view.status.waiting_for
        and view.status.waiting_for.startswith("budget:")
    ):
        lines.append(reconciling.message)
    text = " ".join(lines)
    ns = f" -n {view.namespace}" if view.namespace else ""
    if ANNOTATION_ORPHAN in text:
        lines.append(f"kubectl akua orphan {view.name}{ns}  (sets {ANNOTATION_ORPHAN}=true)")
    if ANNOTATION_RETRY in text:
        lines.append(f"kubectl akua retry {view.name}{ns}  (sets {ANNOTATION_RETRY})")
    return lines


def _bar(op: OperationStatus, tty: bool) -> RenderableType:
    finished, total = step_counts(op)
    label = f" {finished}/{total} steps"
    if not tty:
        return Text(label.strip())
    grid = Table.grid(padding=(0, 1))
    grid.add_row(ProgressBar(total=max(total, 1), completed=finished, width=30), label.strip())
    return grid


def status_story(
    obj: dict[str, Any], events: list[dict[str, Any]], now: datetime, *, tty: bool
) -> RenderableType:
    view = View.of(obj)
    st = view.status
    parts: list[RenderableType] = []
    title = Text(f"AkuaCluster {view.namespace}/{view.name}", style="bold")
    if view.deletion_timestamp:
        title.append(f"  deleting for {view.held_for(now)}", style="yellow")
    if view.spec.deletion.protection:
        title.append("  protected (spec.deletion.protection)", style="cyan")
    parts.append(title)

    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("Phase", view.phase())
    cluster = view.cluster_id or "(none yet)"
    state = f"  state {st.state}" if st.state else ""
    facts.add_row("Akua cluster", f"{cluster}{state}")
    if st.html_url:
        facts.add_row("Dashboard", st.html_url)
    if view.spec.deletion.policy != "Delete" or view.deletion_timestamp:
        facts.add_row(
            "On deletion",
            f"policy {view.spec.deletion.policy}, onFailure {view.spec.deletion.on_failure}",
        )
    waiting = st.waiting_for or "nothing"
    facts.add_row("Waiting for", Text(waiting, style="yellow" if st.waiting_for else "green"))
    todo = what_to_do(view)
    if todo:
        facts.add_row("What you can do", Text("\n".join(todo), style="bold"))
    parts.append(facts)

    op = st.operation
    if op is not None:
        head = Text("\nOperation ", style="bold")
        head.append(f"{op.type} {op.id} {op.state}")
        if op.started_at:
            head.append(f"  started {clock(op.started_at)}")
        if op.completed_at:
            head.append(f"  ended {clock(op.completed_at)}")
        head.append(f"  last read from Akua {ago(op.last_read_at, now)}")
        parts.append(head)
        if op.html_url:
            parts.append(Text(f"  {op.html_url}"))
        parts.append(_bar(op, tty))
        steps = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for col in ("", "#", "step", "status", "started", "ended", "note"):
            steps.add_column(col)
        offset = op.steps_offset or 0
        total = len(op.steps) + (op.steps_omitted or 0)
        for i, step in enumerate(op.steps, start=offset + 1):
            start = parse_time(step.started_at)
            if step.completed_at:
                end = clock(step.completed_at)
            elif step.status == "running" and start is not None:
                end = f"(running {duration((now - start).total_seconds())})"
            else:
                end = ""
            note = step.error_message or (
                "waits for a person in Akua"
                if step.status == "running" and step.execution_type in ("user", "approval")
                else ""
            )
            steps.add_row(
                STEP_MARK.get(step.status, "?"),
                f"{i}/{total}",
                step.name,
                Text(step.status, style=STEP_STYLE.get(step.status, "")),
                clock(step.started_at),
                end,
                note,
            )
        parts.append(steps)
        if op.error is not None:
            parts.append(Text(f"  error: {op.error.message}", style="red"))

    if st.conditions:
        parts.append(Text("\nConditions", style="bold"))
        conds = Table(box=None, show_header=False, pad_edge=False)
        for _ in range(5):
            conds.add_column(overflow="fold")
        for c in st.conditions:
            good = (c.type == "Ready") == (c.status == ConditionStatus.TRUE)
            conds.add_row(
                c.type,
                Text(str(c.status), style="green" if good else "yellow"),
                c.reason,
                ago(c.last_transition_time, now),
                c.message,
            )
        parts.append(conds)

    parts.append(Text("\nEvents", style="bold"))
    if events:
        table = Table(box=None, show_header=False, pad_edge=False)
        for _ in range(4):
            table.add_column(overflow="fold")
        for e in events[-EVENT_LIMIT:]:
            when = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
            kind = str(e.get("type", ""))
            table.add_row(
                ago(when, now),
                Text(kind, style="red" if kind == "Warning" else ""),
                str(e.get("reason", "")),
                str(e.get("message", "")),
            )
        parts.append(table)
    else:
        parts.append(Text("  (none)"))
    return Group(*parts)


def status_data(obj: dict[str, Any], events: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """``-o json|yaml``: the same story as data (the status in the operator's own form)."""
    view = View.of(obj)
    return {
        "name": view.name,
        "namespace": view.namespace,
        "phase": view.phase(),
        "deleting": bool(view.deletion_timestamp),
        "deletionHeldSeconds": (
            int((now - t).total_seconds()) if (t := parse_time(view.deletion_timestamp)) else None
        ),
        "protected": view.spec.deletion.protection,
        "waitingFor": view.status.waiting_for,
        "whatToDo": what_to_do(view),
        "spec": view.spec.dump(),
        "status": view.status.dump(),
        "events": [
            {
                "type": e.get("type"),
                "reason": e.get("reason"),
                "message": e.get("message"),
                "lastTimestamp": e.get("lastTimestamp") or e.get("eventTime"),
                "count": e.get("count"),
            }
            for e in events
        ],
    }


def list_table(objs: list[dict[str, Any]], now: datetime, *, namespaces: bool) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    if namespaces:
        table.add_column("NAMESPACE")
    for col in ("NAME", "CLUSTER", "PHASE", "PROGRESS", "HELD", "WAITING FOR"):
        table.add_column(col, overflow="fold")
    for obj in objs:
        view = View.of(obj)
        row = [
            view.name,
            view.cluster_id or "-",
            view.phase(),
            view.status.progress or "-",
            view.held_for(now) or "-",
            view.status.waiting_for or "-",
        ]
        if namespaces:
            row.insert(0, view.namespace)
        table.add_row(*row)
    return table


def console(*, tty: bool | None = None) -> Console:
    """Colours only on a terminal; wide, plain text when piped (no wrapping of long lines)."""
    if tty is None:
        probe = Console()
        tty = probe.is_terminal
    if tty:
        return Console()
    return Console(no_color=True, force_terminal=False, width=400, highlight=False, emoji=False)
