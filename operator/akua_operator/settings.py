"""Settings of ``akua-operator run``: one table of options, each a flag and an environment variable.

Precedence: command-line flag, then environment variable, then default. ``OPTIONS`` is the single
reference (docs/deletion.md and docs/configuration.md list it); :func:`markdown_table` renders it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

DEFAULT_API_URL = "https://api.akua.dev/v1"


def _bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


CRD_DELETION_MODES = ("orphan", "delete")


def _crd_deletion_mode(text: str) -> str:
    """``--on-crd-deletion``: orphan (the CRD guard, the default) or delete."""
    value = text.strip().lower()
    if value not in CRD_DELETION_MODES:
        raise ValueError(f"must be one of {', '.join(CRD_DELETION_MODES)}, not {text!r}")
    return value


_crd_deletion_mode.__name__ = "orphan|delete"  # argparse: "invalid orphan|delete value"


def _names(text: str) -> tuple[str, ...]:
    """A comma-separated list of namespaces (``*``: every watched one); "" is the empty list."""
    return tuple(sorted({n.strip() for n in text.split(",") if n.strip()}))


_names.__name__ = "namespace list"


def _shard_names(text: str) -> tuple[str, ...]:
    from akua_operator.core.shards import parse_names

    return parse_names(text)


_shard_names.__name__ = "shard list"


@dataclass(frozen=True)
class Option:
    attr: str
    flag: str
    env: str
    type: Callable[[str], Any]
    default: Any
    help: str
    metavar: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option("api_url", "--api-url", "AKUA_API_URL", str, DEFAULT_API_URL, "Akua API base URL."),
    Option(
        "ca_file",
        "--ca-file",
        "AKUA_CA_FILE",
        str,
        None,
        "PEM file of CA certificates the Akua client trusts in addition to the system's and "
        "certifi's roots (a private or corporate CA). The operator refuses to start when the "
        "file is missing, unreadable or holds no PEM certificate.",
        metavar="PATH",
    ),
    Option(
        "observe_interval",
        "--observe-interval",
        "AKUA_OBSERVE_INTERVAL",
        float,
        300.0,
        "Seconds between the list sweeps that observe the clusters (paged GET /clusters, one "
        "sweep per credentials and workspace).",
    ),
    Option(
        "observe_jitter",
        "--observe-jitter",
        "AKUA_OBSERVE_JITTER",
        float,
        0.2,
        "Fraction of the interval used to spread the first list sweep of each credentials key.",
    ),
    Option(
        "wait_timeout",
        "--wait-timeout",
        "AKUA_WAIT_TIMEOUT",
        int,
        5,
        "Server-side timeout (1-60 s) of each POST /operations/{id}:wait long poll of the "
        "operation tracker, never less than 5 s (at most one call per 5 s per running "
        "operation); step changes reach the status within about this long.",
    ),
    Option(
        "backoff_base",
        "--backoff-base",
        "AKUA_BACKOFF_BASE",
        float,
        2.0,
        "First delay after a failed Akua call (doubles per consecutive failure).",
    ),
    Option(
        "backoff_cap",
        "--backoff-cap",
        "AKUA_BACKOFF_CAP",
        float,
        300.0,
        "Longest delay between retries.",
    ),
    Option(
        "delete_retry_base",
        "--delete-retry-base",
        "AKUA_DELETE_RETRY_BASE",
        float,
        10.0,
        "Delay before the first new DELETE after a failed delete operation (doubles each time).",
    ),
    Option(
        "credentials_backoff",
        "--credentials-backoff",
        "AKUA_CREDENTIALS_BACKOFF",
        float,
        60.0,
        "Delay between attempts while the credentials are rejected (401/403) or missing.",
    ),
    Option(
        "retain_recheck",
        "--retain-recheck",
        "AKUA_RETAIN_RECHECK",
        float,
        15.0,
        "How often a deletion retained after failure (onFailure: Retain) checks for a retry "
        "trigger (spec change, new akua.dev/retry value). No API call.",
    ),
    Option(
        "max_conflicts",
        "--max-conflicts",
        "AKUA_MAX_CONFLICTS",
        int,
        5,
        "409 etag mismatches in a row before the delete backs off.",
    ),
    Option(
        "api_timeout",
        "--api-timeout",
        "AKUA_API_TIMEOUT",
        float,
        15.0,
        "Read timeout of ordinary Akua calls (seconds).",
    ),
    Option(
        "api_max_retries",
        "--api-max-retries",
        "AKUA_API_MAX_RETRIES",
        int,
        2,
        "In-call retries of safe Akua calls (GET, :wait, writes with an idempotency key).",
    ),
    Option(
        "api_retry_after_cap",
        "--api-retry-after-cap",
        "AKUA_API_RETRY_AFTER_CAP",
        float,
        5.0,
        "Longest wait inside one Akua call on a Retry-After (429/503) before its in-call "
        "retry; a longer Retry-After is served by requeueing the resource "
        "(status.deletion.nextAttemptAt), so no handler holds a resource for minutes.",
    ),
    Option(
        "api_rate",
        "--api-rate",
        "AKUA_API_RATE",
        float,
        20.0,
        "Akua requests per second over all resources (0: no limit).",
    ),
    Option("api_burst", "--api-burst", "AKUA_API_BURST", int, 40, "Burst of the rate limit."),
    Option(
        "sweep_horizon",
        "--sweep-horizon",
        "AKUA_SWEEP_HORIZON",
        float,
        600.0,
        "Seconds: an Akua operation that started longer ago (an approval pending for hours) "
        "is followed on its own (one :wait?timeout=60 or GET a minute), never by the "
        "operation tracker's list sweeps, so it never makes a sweep page through the "
        "workspace.",
    ),
    Option(
        "step_read_rate",
        "--step-read-rate",
        "AKUA_STEP_READ_RATE",
        float,
        None,
        "Most GET /operations/{id} step reads per second of the operation tracker (the "
        "steps shown in status); unset: the --api-rate, or 20 when the rate limit is off.",
    ),
    Option(
        "standalone",
        "--standalone",
        "AKUA_STANDALONE",
        _bool,
        True,
        "Run without kopf peering (true unless a peering name is given).",
    ),
    Option(
        "peering_name",
        "--peering-name",
        "AKUA_PEERING_NAME",
        str,
        None,
        "kopf peering object name (several replicas: one active).",
    ),
    Option(
        "shard",
        "--shard",
        "AKUA_SHARD",
        str,
        None,
        "The shard this process is: a name serves only the AkuaClusters labelled "
        "akua.dev/shard=NAME (it must be in --shard-names). Empty or 'default': the shard "
        "that serves every AkuaCluster whose label is missing or names no configured shard. "
        "With a peering name, the shard's peering is <peering-name>-<shard>. See docs/design.md "
        "(Shards).",
        metavar="NAME",
    ),
    Option(
        "shard_names",
        "--shard-names",
        "AKUA_SHARD_NAMES",
        _shard_names,
        None,
        "Comma-separated names of every named shard (the same list in every shard); empty: "
        "no shards, this process serves every AkuaCluster. Give each shard its share of the "
        "workspace's Akua rate with --api-rate/--api-burst.",
        metavar="A,B",
    ),
    Option(
        "access_guard",
        "--access-guard",
        "AKUA_ACCESS_GUARD",
        str,
        None,
        "Namespaced install: the name of the RoleBinding that gives the operator its rights in "
        "each watched namespace (to a ClusterRole). While AkuaClusters there hold its finalizer "
        "it keeps the finalizer akua.dev/operator-access on it (and on the KopfPeering), so "
        "deleting the namespace cannot take its access away first (needs get/patch on it and "
        "get on the namespace). Unset: no guard.",
    ),
    Option(
        "peering_priority",
        "--peering-priority",
        "AKUA_PEERING_PRIORITY",
        int,
        None,
        "kopf peering priority of this replica: the live replica with the highest priority is "
        "active, the others wait. Unset: from the start time (earlier is higher) plus random "
        "low bits, so the oldest replica stays active and replicas never tie (kopf pauses "
        "every replica that shares the top priority).",
    ),
    Option(
        "on_crd_deletion",
        "--on-crd-deletion",
        "AKUA_ON_CRD_DELETION",
        _crd_deletion_mode,
        "orphan",
        "What an AkuaCluster deleted because its CRD (akuaclusters.akua.dev) is being deleted "
        "does: orphan releases it WITHOUT deleting the Akua cluster (Warning Event, log line, "
        "metric, and its id in the released-clusters ConfigMap); delete deletes the Akua "
        "cluster as for any other deletion.",
        metavar="orphan|delete",
    ),
    Option(
        "deletion_budget_per_minute",
        "--deletion-budget-per-minute",
        "AKUA_DELETION_BUDGET_PER_MINUTE",
        int,
        0,
        "At most this many Akua deletes may start per minute in this operator process (with "
        "shards: per shard); beyond it a deletion waits with Reconciling reason "
        "WaitingForDeletionBudget until a slot frees or akua.dev/approve-delete=true is set on "
        "the resource. 0: no budget.",
    ),
    Option(
        "step_events",
        "--step-events",
        "AKUA_STEP_EVENTS",
        _bool,
        False,
        "One OperationStep Event per step transition of an Akua operation. Off: Events mark "
        "an operation's start, its end and failures; the steps are in status.operation and "
        "the OPERATION column.",
    ),
    Option(
        "released_configmap",
        "--released-configmap",
        "AKUA_RELEASED_CONFIGMAP",
        str,
        "akua-operator-released-clusters",
        "ConfigMap (in the operator namespace) that records every Akua cluster released "
        "without deleting because the CRD was deleted.",
    ),
    Option(
        "operator_namespace",
        "--operator-namespace",
        "AKUA_OPERATOR_NAMESPACE",
        str,
        None,
        "The operator's own namespace (the chart sets it): where the released-clusters "
        "ConfigMap and the cluster claims (Leases akua-claim-<cluster id>) are written. "
        "Unset: those releases are recorded in logs and Events only, and cluster claims are "
        "not recorded (one cluster may then be claimed by two resources).",
    ),
    Option(
        "default_credentials_namespaces",
        "--default-credentials-namespaces",
        "AKUA_DEFAULT_CREDENTIALS_NAMESPACES",
        _names,
        None,
        "Comma-separated namespaces whose AkuaClusters may use the operator's own token "
        "(AKUA_TOKEN); * for every watched namespace, an empty value for none. "
        "Elsewhere a resource must name a Secret (spec.credentials.secretRef) or it stalls "
        "with reason DefaultCredentialsNotPermitted before any Akua call. Unset: the namespaces "
        "given with --namespace (none with --all-namespaces). See docs/security.md.",
        metavar="NS,...",
    ),
    Option(
        "default_credentials_namespace_selector",
        "--default-credentials-namespace-selector",
        "AKUA_DEFAULT_CREDENTIALS_NAMESPACE_SELECTOR",
        str,
        None,
        "With --all-namespaces only: namespaces whose labels match this equality-based label "
        "selector (e.g. team-tier=shared) may also use the operator's own token (needs "
        "get on namespaces).",
        metavar="SELECTOR",
    ),
)

#: Bits of randomness below the start time in a default peering priority (ties: same ms).
PRIORITY_RANDOM_BITS = 10
#: Start times (ms since the epoch) count down from here (positive until the year 2109); a
#: priority stays at most 2^52, so every JSON reader keeps the number exact.
_PRIORITY_EPOCH_MS = 2**42


def default_priority(started_at: float | None = None) -> int:
    """This process's kopf peering priority when none is configured: the earlier a replica
    started, the higher, so the oldest live replica stays active and a new one (a restart, a
    rolling update) waits instead of taking over. Random low bits break ties: kopf pauses every
    replica sharing the top priority."""
    started_ms = int((time.time() if started_at is None else started_at) * 1000)
    rank = max(1, _PRIORITY_EPOCH_MS - started_ms)
    return (rank << PRIORITY_RANDOM_BITS) | secrets.randbits(PRIORITY_RANDOM_BITS)


@dataclass(frozen=True)
class Settings:
    """Everything ``akua-operator run`` needs (the Akua token is read separately, see kube)."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    api_url: str = DEFAULT_API_URL
    ca_file: str | None = None
    observe_interval: float = 300.0
    observe_jitter: float = 0.2
    wait_timeout: int = 5
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    delete_retry_base: float = 10.0
    credentials_backoff: float = 60.0
    retain_recheck: float = 15.0
    max_conflicts: int = 5
    api_timeout: float = 15.0
    api_max_retries: int = 2
    api_retry_after_cap: float = 5.0
    api_rate: float = 20.0
    api_burst: int = 40
    sweep_horizon: float = 600.0
    #: None: the api_rate (20 when that is 0); see :attr:`step_reads_per_second`.
    step_read_rate: float | None = None
    standalone: bool = True
    peering_name: str | None = None
    #: "" = the default shard; ``shard_names`` every named shard (empty: not sharded).
    shard: str = ""
    shard_names: tuple[str, ...] = ()
    access_guard: str | None = None
    #: None only in hand-built Settings; :func:`from_args` always picks one.
    peering_priority: int | None = None
    on_crd_deletion: str = "orphan"
    deletion_budget_per_minute: int = 0
    step_events: bool = False
    released_configmap: str = "akua-operator-released-clusters"
    operator_namespace: str | None = None
    #: None: the namespaces given with --namespace (none with --all-namespaces).
    default_credentials_namespaces: tuple[str, ...] | None = None
    default_credentials_namespace_selector: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        dest="namespaces",
        action="append",
        default=[],
        help="Namespace to watch (repeatable). Env AKUA_NAMESPACES (comma-separated).",
    )
    parser.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        default=None,
        help="Watch every namespace (cluster-wide). Env AKUA_ALL_NAMESPACES.",
    )
    for opt in OPTIONS:
        kwargs: dict[str, Any] = {"dest": opt.attr, "default": None}
        if opt.type is _bool:
            kwargs["type"] = _bool
            kwargs["metavar"] = "BOOL"
        else:
            kwargs["type"] = opt.type
        if opt.metavar is not None:
            kwargs["metavar"] = opt.metavar
        parser.add_argument(opt.flag, help=f"{opt.help} Env {opt.env}.", **kwargs)


def from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        value = getattr(args, opt.attr, None)
        if value is None and env.get(opt.env):
            try:
                value = opt.type(env[opt.env])
            except ValueError as exc:
                raise ValueError(f"{opt.env}: {exc}") from None
        values[opt.attr] = opt.default if value is None else value
    namespaces: Sequence[str] = getattr(args, "namespaces", None) or [
        n.strip() for n in env.get("AKUA_NAMESPACES", "").split(",") if n.strip()
    ]
    all_ns = getattr(args, "all_namespaces", None)
    if all_ns is None:
        all_ns = _bool(env.get("AKUA_ALL_NAMESPACES", "false"))
    from akua_operator.core.shards import DEFAULT_SHARD, check_name

    values["shard_names"] = tuple(values["shard_names"] or ())
    shard = values["shard"] = str(values["shard"] or "").strip()
    if shard == DEFAULT_SHARD:
        values["shard"] = shard = ""
    if shard:
        check_name(shard)
        if shard not in values["shard_names"]:
            raise ValueError(f"--shard {shard!r} is not in --shard-names")
    if values["peering_name"]:
        values["standalone"] = False
        if values["shard_names"]:
            # One peering per shard: the replicas of a shard elect among themselves.
            values["peering_name"] = f"{values['peering_name']}-{shard or DEFAULT_SHARD}"
    if values["peering_priority"] is None:
        values["peering_priority"] = default_priority()
    values["wait_timeout"] = max(1, min(60, int(values["wait_timeout"])))
    values["deletion_budget_per_minute"] = max(0, int(values["deletion_budget_per_minute"]))
    values["sweep_horizon"] = max(60.0, float(values["sweep_horizon"]))
    if values["step_read_rate"] is not None:
        values["step_read_rate"] = max(0.1, float(values["step_read_rate"]))
    selector = values["default_credentials_namespace_selector"]
    if selector is not None and not selector.strip():
        values["default_credentials_namespace_selector"] = None
    elif selector is not None:
        if not all_ns:
            raise ValueError(
                "--default-credentials-namespace-selector needs --all-namespaces (reading "
                "namespace labels needs cluster rights); list the namespaces with "
                "--default-credentials-namespaces instead"
            )
        from akua_operator.core.tenancy import parse_selector

        parse_selector(selector)  # raises ValueError with the bad term
    known = {f.name for f in fields(Settings)}
    return Settings(
        namespaces=tuple(namespaces),
        all_namespaces=bool(all_ns),
        **{k: v for k, v in values.items() if k in known},
    )


def markdown_table() -> str:
    rows = [
        "| flag | environment | default | meaning |",
        "|---|---|---|---|",
        "| `--namespace NS` (repeatable) | `AKUA_NAMESPACES` (comma-separated) | - | "
        "namespaces to watch |",
        "| `--all-namespaces` | `AKUA_ALL_NAMESPACES` | false | watch every namespace |",
        "| - | `AKUA_TOKEN` | - | the operator's own Akua token (default credentials) |",
        "| - | `AKUA_TOKEN_FILE` | - | file holding the token; read on every attempt |",
        "| - | `KUBECONFIG` | in-cluster | how to reach Kubernetes |",
    ]
    for opt in OPTIONS:
        default = "-" if opt.default is None else str(opt.default)
        rows.append(f"| `{opt.flag}` | `{opt.env}` | {default} | {opt.help} |")
    return "\n".join(rows) + "\n"
