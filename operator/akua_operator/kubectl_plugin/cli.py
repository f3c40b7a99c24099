"""``kubectl akua``: status, list, orphan, retry (see docs/troubleshooting.md)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from rich.console import Console
from rich.live import Live

from akua_operator.kubectl_plugin.kube import Kube, KubeError
from akua_operator.kubectl_plugin.render import (
    View,
    console,
    list_table,
    status_data,
    status_story,
)
from akua_operator.resource.models import ANNOTATION_ORPHAN, ANNOTATION_RETRY, CRD_NAME

EXIT_NOT_FOUND = 1
EXIT_REFUSED = 1
EXIT_ABORTED = 2


def _now() -> datetime:
    return datetime.now(UTC)


def _parser() -> argparse.ArgumentParser:
    def options(default: Any) -> argparse.ArgumentParser:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument(
            "-n", "--namespace", default=default, help="namespace (default: the context's)"
        )
        common.add_argument(
            "--context", default=default, help="kubeconfig context (default: the current one)"
        )
        common.add_argument(
            "--kubeconfig", default=default, help="kubeconfig file (default: $KUBECONFIG)"
        )
        return common

    # The options are accepted before and after the command (`kubectl akua -n NS status X`
    # and `kubectl akua status X -n NS`); after it they must not reset what came before.
    common = options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="kubectl akua",
        description="See what an AkuaCluster waits for, and act on it.",
        parents=[options(None)],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser(
        "status", parents=[common], help="the story of one AkuaCluster: what it waits for"
    )
    status.add_argument("name")
    status.add_argument("-o", "--output", choices=["json", "yaml"])
    status.add_argument("-w", "--watch", action="store_true", help="redraw as status changes")
    lst = sub.add_parser("list", parents=[common], help="every AkuaCluster, phase and progress")
    lst.add_argument("-A", "--all-namespaces", action="store_true")
    which = lst.add_mutually_exclusive_group()
    which.add_argument("--deleting", action="store_true", help="only those being deleted")
    which.add_argument("--stalled", action="store_true", help="only those Stalled=True")
    lst.add_argument("-o", "--output", choices=["json", "yaml"])
    for verb, text in (
        ("orphan", "release without deleting the Akua cluster (akua.dev/orphan=true)"),
        ("retry", "ask the operator to try again (a new akua.dev/retry value)"),
    ):
        p = sub.add_parser(verb, parents=[common], help=text)
        p.add_argument("name")
        p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = console()
    err = Console(stderr=True, no_color=not sys.stderr.isatty(), highlight=False)
    try:
        kube = Kube.connect(args.kubeconfig, args.context, args.namespace)
        command: Callable[[Kube, argparse.Namespace, Console], int] = {
            "status": _status,
            "list": _list,
            "orphan": _orphan,
            "retry": _retry,
        }[args.command]
        return command(kube, args, out)
    except KubeError as exc:
        if exc.status == 404 and "the server could not find" in exc.message.lower():
            err.print(f"error: the AkuaCluster API ({CRD_NAME}) is not installed in this cluster")
        else:
            err.print(f"error: the API server answered {exc.status} {exc.reason}: {exc.message}")
        return 1
    except KeyboardInterrupt:
        return 130


def _dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2)
    return str(yaml.safe_dump(data, sort_keys=False))


def _not_found(kube: Kube, name: str) -> int:
    print(f"error: AkuaCluster {kube.namespace}/{name} not found", file=sys.stderr)
    return EXIT_NOT_FOUND


def _status(kube: Kube, args: argparse.Namespace, out: Console) -> int:
    obj = kube.get(args.name)
    if obj is None:
        return _not_found(kube, args.name)
    if args.output:
        data = status_data(obj, kube.events(obj), _now())
        out.print(_dump(data, args.output), markup=False, highlight=False, soft_wrap=True)
        if not args.watch:
            return 0
    if not args.watch:
        out.print(status_story(obj, kube.events(obj), _now(), tty=out.is_terminal))
        return 0
    return _watch(kube, args, out, obj)


def _watch(kube: Kube, args: argparse.Namespace, out: Console, obj: dict[str, Any]) -> int:
    """Redraw on every change (from the version just read, so nothing is missed) until the
    resource is gone; on a terminal in place, when piped one story after another."""

    def render(current: dict[str, Any]) -> Any:
        return status_story(current, kube.events(current), _now(), tty=out.is_terminal)

    def changes() -> Iterator[dict[str, Any] | None]:
        current: dict[str, Any] | None = obj
        while current is not None:
            version = current.get("metadata", {}).get("resourceVersion")
            try:
                for kind, changed in kube.watch(args.name, version):
                    if kind == "DELETED":
                        yield None
                        return
                    if kind in ("ADDED", "MODIFIED"):
                        current = changed
                        yield changed
            except KubeError as exc:
                if exc.status != 410:  # 410 Gone: the version expired; read again
                    raise
            current = kube.get(args.name)  # the watch ended (server timeout): read again
            if current is not None:
                yield current
        yield None

    gone = f"AkuaCluster {kube.namespace}/{args.name} was deleted"
    if out.is_terminal:
        with Live(render(obj), console=out, auto_refresh=False) as live:
            for current in changes():
                if current is None:
                    break
                live.update(render(current), refresh=True)
        out.print(gone)
        return 0
    out.print(render(obj))
    last = obj.get("metadata", {}).get("resourceVersion")
    for current in changes():
        if current is None:
            break
        version = current.get("metadata", {}).get("resourceVersion")
        if version == last:
            continue
        last = version
        out.print(f"\n--- {_now().strftime('%H:%M:%S')} ---")
        out.print(render(current))
        sys.stdout.flush()
    out.print(f"\n{gone}")
    sys.stdout.flush()
    return 0


def _list(kube: Kube, args: argparse.Namespace, out: Console) -> int:
    objs = kube.list_all(args.all_namespaces)
    views = [(o, View.of(o)) for o in objs]
    if args.deleting:
        views = [(o, v) for o, v in views if v.deletion_timestamp]
    if args.stalled:
        views = [(o, v) for o, v in views if v.stalled is not None]
    views.sort(key=lambda ov: (ov[1].namespace, ov[1].name))
    if args.output:
        now = _now()
        data = [status_data(o, [], now) for o, _ in views]
        for item in data:
            item.pop("events")
        out.print(_dump(data, args.output), markup=False, highlight=False, soft_wrap=True)
        return 0
    if not views:
        where = "any namespace" if args.all_namespaces else f"namespace {kube.namespace}"
        out.print(f"No AkuaClusters found in {where}.")
        return 0
    out.print(list_table([o for o, _ in views], _now(), namespaces=args.all_namespaces))
    return 0


def _confirm(args: argparse.Namespace, out: Console) -> bool:
    if args.yes:
        return True
    out.print("Proceed? [y/N] ", end="")
    sys.stdout.flush()
    try:
        answer = input()
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    out.print("Aborted: nothing changed.")
    return False


def _orphan(kube: Kube, args: argparse.Namespace, out: Console) -> int:
    obj = kube.get(args.name)
    if obj is None:
        return _not_found(kube, args.name)
    view = View.of(obj)
    where = f"{view.namespace}/{view.name}"
    cid = view.cluster_id
    lines = [f"Orphan AkuaCluster {where}: set {ANNOTATION_ORPHAN}=true."]
    if cid:
        url = f" ({view.status.html_url})" if view.status.html_url else ""
        lines.append(
            f"Akua cluster {cid}{url} will NOT be deleted: it keeps running, and billing, in "
            f"Akua. Delete it there by hand if it is no longer wanted."
        )
    else:
        lines.append(
            "No Akua cluster id is recorded: if a create was sent, a cluster may exist in Akua "
            "that nobody will delete (look for it by name)."
        )
    if view.deletion_timestamp:
        lines.append(f"The deletion of {where} is released at once: the resource disappears.")
    else:
        lines.append(f"When {where} is deleted, it is released without an Akua call.")
    for line in lines:
        out.print(line, markup=False, highlight=False)
    if not _confirm(args, out):
        return EXIT_ABORTED
    return _annotate(kube, view, {ANNOTATION_ORPHAN: "true"}, out)


def _retry(kube: Kube, args: argparse.Namespace, out: Console) -> int:
    obj = kube.get(args.name)
    if obj is None:
        return _not_found(kube, args.name)
    view = View.of(obj)
    where = f"{view.namespace}/{view.name}"
    cid = view.cluster_id or "(no id recorded)"
    value = _now().strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [f"Retry AkuaCluster {where}: set {ANNOTATION_RETRY}={value}."]
    if view.deletion_timestamp:
        lines.append(
            f"The operator asks Akua again and the deletion goes on: Akua cluster {cid} will be "
            f"DELETED (billing stops once its delete operation succeeded)."
        )
        if view.spec.deletion.protection:
            lines.append(
                "spec.deletion.protection is true: the operator keeps holding the deletion "
                "until it is set to false."
            )
    else:
        lines.append(
            f"The operator tries again what failed for good (a create, import, suspend or "
            f"resume) of Akua cluster {cid}; nothing is deleted."
        )
    if view.status.waiting_for:
        lines.append(f"It waits for: {view.status.waiting_for}")
    for line in lines:
        out.print(line, markup=False, highlight=False)
    if not _confirm(args, out):
        return EXIT_ABORTED
    return _annotate(kube, view, {ANNOTATION_RETRY: value}, out)


def _annotate(kube: Kube, view: View, annotations: dict[str, str], out: Console) -> int:
    try:
        kube.annotate(view.name, annotations)
    except KubeError as exc:
        if exc.status in (400, 403, 422):
            print(
                f"Refused by the API server ({exc.reason}): {exc.message}\nNothing changed.",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        raise
    text = ", ".join(f"{k}={v}" for k, v in annotations.items())
    out.print(f"Done: {text} set on {view.namespace}/{view.name}.", markup=False)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
