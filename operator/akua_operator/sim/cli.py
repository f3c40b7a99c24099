"""The ``akua-sim`` command: the Akua API simulator as a real HTTP server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import uvicorn

from akua_operator.sim.app import create_app
from akua_operator.sim.config import PROFILES, SimConfig
from akua_operator.sim.server import DropGuard, install_log_filter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="akua-sim",
        description="Simulated Akua API (serves /v1, admin under /_sim). See docs/simulator.md.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--token",
        action="append",
        dest="tokens",
        help="accepted bearer token (repeatable; default sk_akua_test)",
    )
    parser.add_argument(
        "--step-seconds", type=float, default=None, help="seconds per workflow step (default 2)"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    parser.add_argument(
        "--workspace-id", default=None, help="the default workspace (of every --token)"
    )
    parser.add_argument(
        "--workspace-token",
        action="append",
        dest="workspace_tokens",
        metavar="TOKEN=WORKSPACE",
        help="a token of another workspace (repeatable; WORKSPACE may list several, comma-"
        "separated, the token's own first)",
    )
    parser.add_argument(
        "--profile",
        default=None,
        choices=sorted(PROFILES),
        help="start from a named profile of gap decisions (default: default; see "
        "docs/simulator.md); --config and flags override it",
    )
    parser.add_argument(
        "--validate-responses",
        action="store_true",
        default=None,
        help="check every response against openapi.json and record violations "
        "(GET /_sim/violations)",
    )
    parser.add_argument("--stale-read-seconds", type=float, default=None)
    parser.add_argument(
        "--config",
        default=None,
        help="JSON file with a full SimConfig (flags given explicitly override it)",
    )
    parser.add_argument("--log-level", default="info")
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The ``SimConfig`` of a command line: the ``--config`` file, then explicit flags."""
    data: dict[str, Any] = {}
    if args.profile:
        data.update(PROFILES[args.profile].model_dump(exclude_unset=True))
    if args.config:
        with open(args.config, encoding="utf-8") as fh:
            data.update(json.load(fh))
    for key in (
        "step_seconds",
        "seed",
        "stale_read_seconds",
        "workspace_id",
        "validate_responses",
    ):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    if args.tokens:
        data["tokens"] = args.tokens
    if args.workspace_tokens:
        mapped: dict[str, Any] = dict(data.get("workspace_tokens") or {})
        for item in args.workspace_tokens:
            token, sep, workspaces = item.partition("=")
            ids = [w.strip() for w in workspaces.split(",") if w.strip()]
            if not sep or not token or not ids:
                raise SystemExit("--workspace-token needs TOKEN=WORKSPACE[,WORKSPACE...]")
            mapped[token] = ids
        data["workspace_tokens"] = mapped
    return SimConfig.model_validate(data)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``akua-sim`` console script."""
    args = build_parser().parse_args(argv)
    sim = create_app(config_from_args(args))
    install_log_filter()
    print(
        f"akua-sim serving http://{args.host}:{args.port}/v1 (admin /_sim)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        DropGuard(sim),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        lifespan="off",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
