"""The ``akua-operator`` command.

- ``akua-operator run [--namespace NS ...|--all-namespaces] [options]``: run the operator.
- ``akua-operator crd``: print the generated AkuaCluster CRD (YAML).
- ``akua-operator settings``: print the settings reference table (Markdown).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from akua_operator import __version__, telemetry
from akua_operator import settings as settings_mod
from akua_operator.resource.crd import crd_yaml
from akua_operator.telemetry import memory

log = logging.getLogger("akua_operator")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="akua-operator")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the operator")
    settings_mod.add_arguments(run)
    telemetry.add_arguments(run)
    sub.add_parser("crd", help="print the AkuaCluster CustomResourceDefinition (YAML)")
    sub.add_parser("settings", help="print the settings reference (Markdown table)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``akua-operator`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(crd_yaml())
        return 0
    if args.command == "settings":
        sys.stdout.write(settings_mod.markdown_table())
        return 0
    if args.command == "run":
        return run(args)
    parser.print_help()
    return 2


def run(args: argparse.Namespace) -> int:
    import kopf
    from kopf._core.intents.registries import SmartOperatorRegistry

    from akua_operator.handlers import Runtime, register
    from akua_operator.handlers.access import register as register_access_guard
    from akua_operator.handlers.peering import watch_peering
    from akua_operator.telemetry import kopf_hooks

    try:
        settings = settings_mod.from_args(args)
        tel_settings = telemetry.settings_from_args(
            args, reconcile_interval=settings.observe_interval
        )
        if settings.ca_file:  # a missing or bad CA file stops the start, not every call later
            from akua_operator.akua.client import tls_context

            tls_context(settings.ca_file)
    except ValueError as exc:  # a bad environment value (flags are checked by argparse)
        sys.stderr.write(f"akua-operator run: {exc}\n")
        return 2
    if not settings.namespaces and not settings.all_namespaces:
        log.error("give --namespace NS (repeatable) or --all-namespaces")
        return 2
    tel = telemetry.setup(tel_settings)
    memory.start_from_env()  # AKUA_TRACEMALLOC (docs/observability.md)
    # A registry with kopf's default login handlers (kubeconfig, in-cluster service account).
    registry = SmartOperatorRegistry()
    runtime = Runtime(settings)
    observer = register(registry, runtime)
    register_access_guard(registry, runtime)
    kopf_hooks.register(
        tel,
        registry=registry,
        watch=True,
        finalizer=runtime.shards.finalizer,
        listeners=[observer.on_event],
    )
    if not settings.standalone:
        # A paused replica (another one is active) stays ready; /readyz shows the state.
        toggles = 1 if settings.all_namespaces else len(settings.namespaces)

        def on_peering(paused: bool) -> None:
            tel.tracker.set_peering_paused(paused)
            observer.set_paused(paused)

        watch_peering(toggles, on_peering)
    log.info(
        "akua-operator %s: Akua API %s, %s, %s",
        __version__,
        settings.api_url,
        "all namespaces" if settings.all_namespaces else f"namespaces {list(settings.namespaces)}",
        "standalone"
        if settings.standalone
        else f"peering {settings.peering_name!r} with priority {settings.peering_priority}",
    )
    if runtime.shards.sharded:
        log.info(
            "shard %r of %s: serves AkuaClusters labelled akua.dev/shard=%s; finalizer %s",
            runtime.shards.label,
            ["default", *settings.shard_names],
            runtime.shards.name or "<none of the named shards>",
            runtime.shards.finalizer,
        )
    log.info(
        "on CRD deletion: %s; deletion budget: %s; released clusters recorded in %s",
        "delete the Akua clusters"
        if settings.on_crd_deletion == "delete"
        else "orphan (release without deleting)",
        f"{settings.deletion_budget_per_minute} per minute (this process)"
        if settings.deletion_budget_per_minute > 0
        else "off",
        f"ConfigMap {settings.operator_namespace}/{settings.released_configmap}"
        if settings.operator_namespace
        else "logs and Events only (no --operator-namespace)",
    )
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                standalone=settings.standalone,
                peering_name=settings.peering_name,
                priority=settings.peering_priority,
                clusterwide=settings.all_namespaces,
                namespaces=list(settings.namespaces),
                memo=kopf.Memo(runtime=runtime),
            )
        )
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    return 0
