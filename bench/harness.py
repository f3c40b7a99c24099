"""Building blocks shared by the benchmark (bench/run.py) and the chaos suite (tests/chaos/).

Everything runs on loopback: the real control plane from hack/controlplane.py (with an audit log
so Kubernetes writes can be counted per client), the Akua simulator, and operators run as
subprocesses the way users run them. Nothing here mocks Kubernetes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
HACK_DIR = REPO_ROOT / "hack"
if str(HACK_DIR) not in sys.path:
    sys.path.insert(0, str(HACK_DIR))

import controlplane  # noqa: E402  (hack/controlplane.py, importable by design)

GROUP = "akua.dev"
VERSION = "v1alpha1"
PLURAL = "akuaclusters"
KIND = "AkuaCluster"
FINALIZER = "akua.dev/finalizer"
CRD_FILE = REPO_ROOT / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # The bodies of AkuaCluster patches: what each write changed (``AuditEvent.detail``).
        {
            "level": "Request",
            "verbs": ["patch"],
            "resources": [{"group": GROUP, "resources": [PLURAL, f"{PLURAL}/status"]}],
        },
        {"level": "Metadata", "verbs": sorted(WRITE_VERBS)},
        {"level": "None"},
    ],
}


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (p in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
    }


# --------------------------------------------------------------------------- control plane


def audit_apiserver_args(workdir: Path) -> tuple[list[str], Path]:
    """kube-apiserver flags for a JSON audit log of every write (metadata only)."""
    workdir.mkdir(parents=True, exist_ok=True)
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    log = workdir / "audit.log"
    args = [
        f"--audit-policy-file={policy}",
        f"--audit-log-path={log}",
        "--audit-log-format=json",
        "--audit-log-maxsize=0",
        "--audit-log-mode=blocking",
    ]
    return args, log


def start_control_plane(
    workdir: Path, *, audit: bool = True, keep_etcd_data: bool = False
) -> tuple[controlplane.ControlPlane, Path | None]:
    args: list[str] = []
    audit_log: Path | None = None
    if audit:
        args, audit_log = audit_apiserver_args(workdir / "audit")
    cp = controlplane.ControlPlane(
        workdir / "cp", apiserver_args=args, keep_etcd_data=keep_etcd_data
    )
    cp.start()
    return cp, audit_log


@dataclass(frozen=True)
class AuditEvent:
    time: float
    verb: str
    user: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int
    user_agent: str
    detail: str = ""  # what an AkuaCluster patch changed (patch_detail), else ""
    message: str = ""  # the API server's answer to a failed write (responseStatus.message)

    @property
    def key(self) -> str:
        res = self.resource + (f"/{self.subresource}" if self.subresource else "")
        return f"{self.verb} {res}"

    @property
    def detailed_key(self) -> str:
        return f"{self.key} [{self.detail}]" if self.detail else self.key


def patch_detail(request: Any) -> str:
    """What an AkuaCluster patch body touches, e.g. ``json-patch finalizers`` (kopf's release),
    ``annotations: progress`` (kopf's progress record), ``annotations: touch-dummy``,
    ``status`` (a status merge patch), ``kopf progress`` / ``kopf dummy`` (kopf's record or
    touch-dummy in ``status.kopf``), joined with ``+``."""
    if isinstance(request, list):  # a JSON patch
        paths = sorted(
            {
                "/".join(str(op.get("path", "")).split("/")[:3])
                for op in request
                if isinstance(op, dict) and op.get("op") != "test"
            }
        )
        return "json-patch " + ",".join(p.strip("/").replace("metadata/", "") for p in paths)
    if not isinstance(request, dict):
        return "?"
    parts: list[str] = []
    for key in sorted(request):
        if key == "metadata" and isinstance(request[key], dict):
            for mkey in sorted(request[key]):
                if mkey == "annotations" and isinstance(request[key][mkey], dict):
                    kinds = sorted(
                        {
                            "touch-dummy"
                            if a.endswith("touch-dummy")
                            else "kopf-managed"
                            if a.endswith("kopf-managed")
                            else "last-handled"
                            if a.endswith("last-handled-configuration")
                            else "progress"
                            if a.startswith("operator.akua.dev/")
                            else a
                            for a in request[key][mkey]
                        }
                    )
                    parts.append("annotations: " + ",".join(kinds))
                else:
                    parts.append(mkey)
        elif key == "status" and isinstance(request[key], dict):
            # kopf's progress record (status.kopf, handlers/akuacluster.py) rides with ours
            ours = sorted(k for k in request[key] if k != "kopf")
            kopf_part = request[key].get("kopf")
            if ours or not isinstance(kopf_part, dict):
                parts.append("status")
            if isinstance(kopf_part, dict):
                parts.append("kopf " + ",".join(sorted(kopf_part)))
        else:
            parts.append(key)
    return " + ".join(parts) or "empty"


def _rfc3339(value: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def read_audit(path: Path) -> list[AuditEvent]:
    """Write requests from the API server's audit log (ResponseComplete stage only)."""
    events: list[AuditEvent] = []
    if not path.exists():
        return events
    with path.open() as fh:
        for line in fh:
            try:
                raw = json.loads(line)
            except ValueError:
                continue
            if raw.get("stage") != "ResponseComplete" or raw.get("verb") not in WRITE_VERBS:
                continue
            ref = raw.get("objectRef") or {}
            events.append(
                AuditEvent(
                    time=_rfc3339(raw["stageTimestamp"]),
                    verb=raw["verb"],
                    user=(raw.get("user") or {}).get("username", ""),
                    resource=ref.get("resource", ""),
                    subresource=ref.get("subresource", ""),
                    namespace=ref.get("namespace", ""),
                    name=ref.get("name", ""),
                    code=int((raw.get("responseStatus") or {}).get("code", 0)),
                    user_agent=raw.get("userAgent", ""),
                    detail=(patch_detail(raw["requestObject"]) if "requestObject" in raw else ""),
                    # (object names replaced, so that counts group by what was wrong)
                    message=re.sub(
                        r'"[^"]*"',
                        '"NAME"',
                        str((raw.get("responseStatus") or {}).get("message") or ""),
                    )[:300],
                )
            )
    return events


# --------------------------------------------------------------------------- kubernetes


def api_client(kubeconfig: Path) -> Any:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def apply_crd(api: Any, crd_file: Path = CRD_FILE, timeout: float = 30) -> None:
    """Create (or replace) the AkuaCluster CRD and wait until it is Established."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api)
    body = yaml.safe_load(crd_file.read_text())
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as err:
        if err.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(name)
        conds = (crd.status.conditions or []) if crd.status else []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            # Discovery can lag the condition a little.
            time.sleep(0.5)
            return
        time.sleep(0.2)
    raise TimeoutError(f"CRD {name} not established within {timeout}s")


def create_namespace(api: Any, name: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})


def service_account_kubeconfig(
    cp: controlplane.ControlPlane, api: Any, namespace: str, name: str, path: Path
) -> tuple[Path, str]:
    """A ServiceAccount bound to cluster-admin, and a kubeconfig with its token.

    Each operator runs under its own identity, so the audit log tells its writes apart from the
    harness's. Returns (kubeconfig path, audit username).
    """
    from kubernetes import client

    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"{namespace}-{name}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        }
    )
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"audiences": [], "expirationSeconds": 4 * 3600}}
    ).status.token
    cp.write_kubeconfig(path, token=token, namespace=namespace)
    return path, f"system:serviceaccount:{namespace}:{name}"


#: Objects per collection DELETE: one DELETE of 5000 objects outlives the API server's request
#: timeout (60 s) and is cut off; batches of this size are deleted together, in parallel.
DELETE_BATCH = 500
BATCH_LABEL = "bench.akua.dev/batch"


def akua_cluster(
    name: str, cluster_id: str, spec_extra: dict[str, Any] | None = None, *, index: int = 0
) -> dict:
    """An AkuaCluster labelled with its deletion batch (``index // DELETE_BATCH``)."""
    spec: dict[str, Any] = {"clusterId": cluster_id}
    spec.update(spec_extra or {})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "labels": {BATCH_LABEL: str(index // DELETE_BATCH)}},
        "spec": spec,
    }


def create_objects(api: Any, namespace: str, bodies: Iterable[dict], workers: int = 4) -> None:
    """Create custom objects, a few at a time (one API client per worker thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    items = list(bodies)
    kubeconfig_api = api

    def work(chunk: list[dict]) -> None:
        objs = client.CustomObjectsApi(kubeconfig_api)
        for body in chunk:
            objs.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    chunks = [items[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        for fut in [pool.submit(work, c) for c in chunks if c]:
            fut.result()


def list_objects(api: Any, namespace: str) -> list[dict]:
    from kubernetes import client

    objs = client.CustomObjectsApi(api)
    return list(objs.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"])


def delete_all(api: Any, namespace: str, n: int = 0) -> None:
    """Delete the whole collection at once. Up to ``DELETE_BATCH`` objects (``n``): one
    collection DELETE. More: one per batch (``akua_cluster``'s label), all in parallel, so
    every object gets its deletionTimestamp within moments and no request outlives the API
    server's timeout."""
    from concurrent.futures import ThreadPoolExecutor

    from kubernetes import client

    objs = client.CustomObjectsApi(api)
    if n <= DELETE_BATCH:
        objs.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        return
    batches = math.ceil(n / DELETE_BATCH)

    def one(batch: int) -> None:
        objs.delete_collection_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=f"{BATCH_LABEL}={batch}"
        )

    with ThreadPoolExecutor(min(batches, 10)) as pool:
        for fut in [pool.submit(one, b) for b in range(batches)]:
            fut.result()
    left = objs.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
    unmarked = [o for o in left if not (o.get("metadata") or {}).get("deletionTimestamp")]
    if unmarked:  # (an object without the batch label: not made by akua_cluster)
        objs.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)


def list_events(api: Any, namespace: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api(api).list_namespaced_event(namespace).items)


# --------------------------------------------------------------------------- watching


@dataclass
class Seen:
    """A compact record of one watch event on an AkuaCluster."""

    t: float
    type: str
    name: str
    resource_version: str
    deleting: bool
    finalizers: tuple[str, ...]
    op_id: str | None
    steps: tuple[tuple[str, str], ...]
    status: dict[str, Any]


def _seen(t: float, kind: str, obj: dict) -> Seen:
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    op = status.get("operation") or {}
    steps = tuple((str(s.get("name")), str(s.get("status"))) for s in (op.get("steps") or []) if s)
    return Seen(
        t=t,
        type=kind,
        name=meta.get("name", ""),
        resource_version=meta.get("resourceVersion", ""),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=tuple(meta.get("finalizers") or ()),
        op_id=op.get("id"),
        steps=steps,
        status=status,
    )


class Watcher(threading.Thread):
    """Watches the AkuaClusters of one namespace and timestamps every change on arrival."""

    def __init__(self, kubeconfig: Path, namespace: str) -> None:
        super().__init__(daemon=True, name=f"watch-{namespace}")
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.seen: list[Seen] = []
        self.current: dict[str, Seen] = {}
        self.gone: dict[str, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def run(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.rest import ApiException

        api = api_client(self.kubeconfig)
        objs = client.CustomObjectsApi(api)
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    listing = objs.list_namespaced_custom_object(
                        GROUP, VERSION, self.namespace, PLURAL
                    )
                    now = time.time()
                    names = set()
                    for item in listing["items"]:
                        self._record(_seen(now, "LISTED", item))
                        names.add(item["metadata"]["name"])
                    with self._lock:
                        for name in list(self.current):
                            if name not in names:
                                self.gone.setdefault(name, now)
                                del self.current[name]
                    rv = listing["metadata"]["resourceVersion"]
                    self._ready.set()
                w = watch.Watch()
                for ev in w.stream(
                    objs.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    resource_version=rv,
                    timeout_seconds=30,
                    allow_watch_bookmarks=True,
                ):
                    now = time.time()
                    obj = ev["object"]
                    kind = ev["type"]
                    if kind == "ERROR":
                        rv = ""
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if kind == "BOOKMARK":
                        continue
                    self._record(_seen(now, kind, obj))
                    if self._stop.is_set():
                        break
            except ApiException as err:
                if err.status == 410:
                    rv = ""
                else:
                    self.errors.append(f"{err.status} {err.reason}")
                    time.sleep(0.5)
            except Exception as err:  # the API server may be restarting: retry
                self.errors.append(f"{type(err).__name__}: {err}"[:300])
                time.sleep(0.5)

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)
            if seen.type == "DELETED":
                self.gone.setdefault(seen.name, seen.t)
                self.current.pop(seen.name, None)
            else:
                self.current[seen.name] = seen

    def wait_ready(self, timeout: float = 30) -> None:
        if not self._ready.wait(timeout):
            raise TimeoutError("watch did not start")

    def stop(self) -> None:
        self._stop.set()

    def snapshot(self) -> dict[str, Seen]:
        with self._lock:
            return dict(self.current)

    def wait_for(self, predicate: Any, timeout: float, what: str, poll: float = 0.1) -> float:
        """Wait until predicate(snapshot) is true; returns the time it became true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return time.time()
            time.sleep(poll)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


# --------------------------------------------------------------------------- processes


@dataclass
class Usage:
    peak_rss: int = 0
    cpu_seconds: float = 0.0
    samples: int = 0


class Sampler(threading.Thread):
    """Samples a process tree's RSS and CPU time (psutil) until stopped."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True, name=f"sample-{pid}")
        self.pid = pid
        self.interval = interval
        self.usage = Usage()
        self._stop = threading.Event()

    def sample(self) -> None:
        try:
            proc = psutil.Process(self.pid)
            procs = [proc, *proc.children(recursive=True)]
            rss = 0
            cpu = 0.0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
                    t = p.cpu_times()
                    cpu += t.user + t.system
        except psutil.Error:
            return
        self.usage.peak_rss = max(self.usage.peak_rss, rss)
        self.usage.cpu_seconds = max(self.usage.cpu_seconds, cpu)
        self.usage.samples += 1

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> Usage:
        self._stop.set()
        return self.usage


@dataclass
class ManagedOperator:
    """An operator run as a subprocess (as users run it); restartable, killable, log kept."""

    argv: list[str]
    env: dict[str, str]
    log_file: Path
    popen: subprocess.Popen[bytes] | None = None
    sampler: Sampler | None = None
    starts: int = 0
    usages: list[Usage] = field(default_factory=list)

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_file.open("ab")
        log.write(f"\n===== start #{self.starts + 1}: {' '.join(self.argv)}\n".encode())
        log.flush()
        self.popen = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
        log.close()
        self.starts += 1
        self.sampler = Sampler(self.popen.pid)
        self.sampler.start()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def mark(self) -> Usage:
        """Take a sample now and return the current usage of this run."""
        assert self.sampler is not None
        self.sampler.sample()
        return Usage(**vars(self.sampler.usage))

    def _end(self) -> None:
        if self.sampler is not None:
            self.usages.append(self.sampler.stop())
            self.sampler = None
        self.popen = None

    def kill(self) -> None:
        """SIGKILL the whole process group: no chance to clean up."""
        if self.popen is not None:
            if self.sampler is not None:
                self.sampler.sample()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        self._end()

    def stop(self, grace: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit code."""
        code = None
        if self.popen is not None:
            if self.sampler is not None:
                self.sampler.sample()
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGTERM)
                try:
                    self.popen.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.popen.pid, signal.SIGKILL)
                    self.popen.wait(10)
            code = self.popen.returncode
        self._end()
        return code

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""


def operator_argv(namespace: str, extra: Sequence[str] = ()) -> list[str]:
    """`akua-operator run --namespace NS`, from the project's venv, on free loopback ports
    for its metrics and health endpoints (several helpers share this machine)."""
    exe = Path(sys.executable).with_name("akua-operator")
    ports = [
        "--metrics-port",
        str(controlplane.free_port()),
        "--health-port",
        str(controlplane.free_port()),
    ]
    return [str(exe), "run", "--namespace", namespace, *ports, *extra]


def metrics_port_of(argv: Sequence[str]) -> int | None:
    """The ``--metrics-port`` an operator argv names (the last one wins), if any."""
    port = None
    for i, arg in enumerate(argv):
        if arg == "--metrics-port" and i + 1 < len(argv):
            port = int(argv[i + 1])
        elif arg.startswith("--metrics-port="):
            port = int(arg.split("=", 1)[1])
    return port


def scrape_metrics(
    port: int, prefixes: Sequence[str], timeout: float = 10
) -> dict[str, float] | str:
    """The samples of the operator's ``/metrics`` whose names start with one of ``prefixes``,
    as ``{'name{labels}': value}``; an error message (str) when the scrape failed."""
    import httpx

    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=timeout)
        resp.raise_for_status()
    except httpx.HTTPError as err:
        return f"scrape failed: {type(err).__name__}: {err}"
    samples: dict[str, float] = {}
    for line in resp.text.splitlines():
        if not line or line.startswith("#") or not line.startswith(tuple(prefixes)):
            continue
        series, _, value = line.rpartition(" ")
        try:
            samples[series] = float(value)
        except ValueError:
            continue
    return samples


def baseline_argv(namespace: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kopf",
        "run",
        str(REPO_ROOT / "bench" / "baseline_operator.py"),
        "--standalone",
        "--namespace",
        namespace,
    ]


def count_by(items: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(items).items()))


# --------------------------------------------------------------------------- the simulator


def _template(path: str) -> str:
    """/clusters/clu_x -> /clusters/{id}; /operations/op_x:wait -> /operations/{id}:wait."""
    parts = path.split("/")
    out = []
    for i, part in enumerate(parts):
        if i >= 2 and part and parts[i - 1] in {"clusters", "operations"}:
            name, sep, verb = part.partition(":")
            out.append("{id}" + (sep + verb if sep else "") if name else part)
        else:
            out.append(part)
    return "/".join(out)


def endpoint_of(entry: dict[str, Any]) -> str:
    return f"{entry['method']} {_template(entry['path'])}"


class SimProcess:
    """The Akua simulator as its own process (uvicorn on loopback), driven via /_sim admin calls.

    A separate process keeps its CPU apart from the operator's and the harness's, and lets the
    chaos suite restart or fault it independently.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        token: str,
        step_seconds: float,
        seed: int = 0,
        journal_max: int = 2_000_000,
        wait_poll_seconds: float = 0.05,
        config: dict[str, Any] | None = None,
    ) -> None:
        """``config``: further SimConfig settings (e.g. a profile's, ``validate_responses``)."""
        self.workdir = workdir
        self.extra_config = dict(config or {})
        self.token = token
        self.step_seconds = step_seconds
        self.seed = seed
        self.journal_max = journal_max
        self.wait_poll_seconds = wait_poll_seconds
        self.port = controlplane.free_port()
        self.popen: subprocess.Popen[bytes] | None = None
        self.sampler: Sampler | None = None
        self.log_file = workdir / "sim.log"
        self._http: Any = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/v1"

    def start(self, timeout: float = 30) -> None:
        import httpx

        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "tokens": [self.token],
            "step_seconds": self.step_seconds,
            "seed": self.seed,
            "journal_max": self.journal_max,
            "wait_poll_seconds": self.wait_poll_seconds,
            **self.extra_config,
        }
        with self.log_file.open("ab") as log:
            self.popen = subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "sim",
                    "--port",
                    str(self.port),
                    "--config",
                    json.dumps(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=REPO_ROOT,
            )
        self._http = httpx.Client(base_url=self.base, timeout=30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"simulator exited: {self.log_file.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if self._http.get("/_sim/health").status_code == 200:
                    self.sampler = Sampler(self.popen.pid)
                    self.sampler.start()
                    return
            time.sleep(0.1)
        raise TimeoutError("simulator did not start")

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        if self._http is not None:
            self._http.close()

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = self._http.request(method, f"/_sim{path}", json=body)
        resp.raise_for_status()
        return resp.json()

    def seed_clusters(self, names: Sequence[str]) -> list[str]:
        return [self.admin("POST", "/clusters", {"name": name})["id"] for name in names]

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        return list(self.admin("GET", f"/journal?since={since}")["data"])

    def journal_seq(self) -> int:
        entries = self.journal()
        return int(entries[-1]["seq"]) if entries else 0

    def set_faults(self, **faults: Any) -> Any:
        return self.admin("POST", "/faults", faults)

    def clear_faults(self) -> Any:
        return self.admin("DELETE", "/faults")

    def state(self) -> dict[str, Any]:
        return dict(self.admin("GET", "/state"))

    def operations(self) -> list[dict[str, Any]]:
        """Every operation with float (sub-second) timestamps of the operation and its steps."""
        return list(self.admin("GET", "/operations")["data"])

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """A call to the public API with the simulator's token."""
        headers = {"authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self._http.request(method, f"/v1{path}", headers=headers, **kwargs)


class CorruptingProxy:
    """A loopback HTTP proxy in front of the simulator that can answer matching calls with
    malformed bodies (invalid JSON, missing fields, wrong types, huge documents) instead.

    Runs uvicorn in a thread of the current process. `corrupt(match, bodies)` starts corrupting
    calls whose "METHOD /path" contains one of `match` (cycling through `bodies`); `heal()`
    stops. The call still reaches the simulator first: the server acts, the answer is mangled.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.port = controlplane.free_port()
        self.match: tuple[str, ...] | None = None
        self.bodies: list[tuple[int, bytes]] = []
        self.served: list[tuple[float, str, int]] = []
        self._i = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def corrupt(self, match: Sequence[str], bodies: Sequence[tuple[int, bytes]]) -> None:
        self.bodies = list(bodies)
        self.match = tuple(match)

    def heal(self) -> None:
        self.match = None

    def _app(self) -> Any:
        import httpx
        from starlette.requests import Request
        from starlette.responses import Response

        client = httpx.AsyncClient(base_url=self.upstream, timeout=120)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                return
            request = Request(scope, receive)
            body = await request.body()
            call = f"{request.method} {request.url.path}"
            upstream = await client.request(
                request.method,
                request.url.path + (f"?{request.url.query}" if request.url.query else ""),
                content=body,
                headers={k: v for k, v in request.headers.items() if k.lower() not in {"host"}},
            )
            if self.match and any(m in call for m in self.match) and self.bodies:
                status, content = self.bodies[self._i % len(self.bodies)]
                self._i += 1
                self.served.append((time.time(), call, status))
                response = Response(content, status_code=status, media_type="application/json")
            else:
                response = Response(
                    upstream.content,
                    status_code=upstream.status_code,
                    headers={
                        k: v
                        for k, v in upstream.headers.items()
                        if k.lower() in {"content-type", "retry-after", "etag"}
                    },
                )
            await response(scope, receive, send)

        return app

    def start(self, timeout: float = 15) -> None:
        import uvicorn

        config = uvicorn.Config(
            self._app(), host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline:
                raise TimeoutError("proxy did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)


def _run_sim(argv: Sequence[str]) -> int:
    import argparse

    import uvicorn

    from akua_operator.sim.app import create_app
    from akua_operator.sim.config import SimConfig

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    sim = create_app(SimConfig.model_validate(json.loads(args.config)))
    uvicorn.run(
        _with_precise_operations(sim),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )
    return 0


def _with_precise_operations(sim: Any) -> Any:
    """The simulator plus GET /_sim/operations: every operation with float timestamps.

    The public API (and /_sim/state) round timestamps to whole seconds, as the contract says;
    the benchmark needs the simulator's exact transition times to measure sub-second delays.
    """
    from starlette.responses import JSONResponse

    def precise() -> dict[str, Any]:
        state = sim.state
        with state.lock:
            state.advance_all()
            return {
                "now": sim.clock.now(),
                "data": [
                    {
                        "id": op.id,
                        "type": op.type,
                        "cluster_id": op.cluster_id,
                        "state": op.state,
                        "started_at": op.started_at,
                        "completed_at": op.completed_at,
                        "steps": [
                            {
                                "name": st.name,
                                "status": st.status,
                                "started_at": st.started_at,
                                "completed_at": st.completed_at,
                            }
                            for st in op.steps
                        ],
                    }
                    for op in state.ops.values()
                ],
            }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == "/_sim/operations"
            and scope["method"] == "GET"
        ):
            await JSONResponse(precise())(scope, receive, send)
            return
        await sim(scope, receive, send)

    return app


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "sim":
        sys.exit(_run_sim(sys.argv[2:]))
    sys.exit("usage: harness.py sim --port PORT --config JSON")
