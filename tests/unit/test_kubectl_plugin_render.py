"""kubectl akua's rendering (pure): plain text when piped, colours and a bar on a terminal, and
the core's words shown as they are."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from akua_operator.kubectl_plugin.render import View, console, list_table, status_story, what_to_do

NOW = datetime(2026, 11, 29, 9, 4, 0, tzinfo=UTC)


def obj(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "prod",
            "namespace": "team-a",
            "uid": "u1",
            "deletionTimestamp": "2026-11-29T09:00:00Z",
        },
        "spec": {"clusterId": "clu_1", "deletion": {"protection": True}},
        "status": {
            "clusterId": "clu_1",
            "waitingFor": "person: DeletionProtected",
            "operation": {
                "id": "op_1",
                "type": "cluster.delete",
                "state": "RUNNING",
                "done": False,
                "lastReadAt": "2026-11-29T09:03:50Z",
                "steps": [
                    {"name": "drain_workloads", "status": "completed"},
                    {
                        "name": "delete_workers",
                        "status": "running",
                        "startedAt": "2026-11-29T09:01:00Z",
                    },
                ],
            },
            "conditions": [
                {
                    "type": "Stalled",
                    "status": "True",
                    "reason": "DeletionProtected",
                    "message": "spec.deletion.protection is true: ... set the annotation "
                    "akua.dev/orphan=true",
                    "lastTransitionTime": "2026-11-29T09:00:00Z",
                }
            ],
            **status,
        },
    }


def render(tty: bool, thing: Any) -> str:
    buf = io.StringIO()
    if tty:
        out = Console(file=buf, force_terminal=True, width=120, color_system="standard")
    else:
        out = console(tty=False)
        out.file = buf
    out.print(thing)
    return buf.getvalue()


def test_piped_output_is_plain_and_tells_the_story() -> None:
    text = render(False, status_story(obj(), [], NOW, tty=False))
    assert "\x1b[" not in text
    said = " ".join(text.split())
    assert "AkuaCluster team-a/prod deleting for 4m00s protected" in said
    assert "Waiting for person: DeletionProtected" in said
    assert "kubectl akua orphan prod -n team-a" in said
    assert "1/2 steps" in said
    assert "delete_workers running" in said
    assert "(running 3m00s)" in said
    assert "last read from Akua 10s ago" in said


def test_a_terminal_gets_colours_and_a_progress_bar() -> None:
    text = render(True, status_story(obj(), [], NOW, tty=True))
    assert "\x1b[" in text
    assert "━" in text  # rich's progress bar


def test_what_to_do_is_the_stalled_message_plus_the_command() -> None:
    lines = what_to_do(View.of(obj()))
    assert lines[0].startswith("spec.deletion.protection is true")
    assert lines[1].startswith("kubectl akua orphan prod -n team-a")


def test_list_shows_how_long_a_deletion_is_held() -> None:
    text = render(False, list_table([obj()], NOW, namespaces=True))
    row = " ".join(text.splitlines()[1].split())
    assert row.startswith("team-a prod clu_1 Stalled/DeletionProtected")
    assert "4m00s" in row


def test_options_work_before_and_after_the_command() -> None:
    from akua_operator.kubectl_plugin.cli import _parser

    parser = _parser()
    assert parser.parse_args(["-n", "a", "status", "x"]).namespace == "a"
    assert parser.parse_args(["status", "x", "-n", "b"]).namespace == "b"
    assert parser.parse_args(["list", "-A"]).namespace is None
