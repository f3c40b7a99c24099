"""Helpers of the operator e2e tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from akua_operator.sim.server import SimServer

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"
TOKEN = "sk_akua_test"


def operator_binary() -> Path:
    path = Path(sys.executable).parent / "akua-operator"
    if not path.exists():
        raise AssertionError(f"{path} is missing: run `make venv` (uv sync) first")
    return path


class Sim:
    """The simulator plus helpers for its /_sim admin endpoints."""

    def __init__(self, server: SimServer) -> None:
        self.server = server
        self.http = httpx.Client(timeout=10)

    @property
    def url(self) -> str:
        return self.server.url

    def admin(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.http.request(method, self.server.admin_url + path, json=body)
        assert resp.status_code < 300, resp.text
        return resp.json()

    def api(self, method: str, path: str, *, token: str = TOKEN, **kw: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}", **kw.pop("headers", {})}
        return self.http.request(method, self.server.url + path, headers=headers, **kw)

    def seed(self, name: str, **extra: Any) -> dict[str, Any]:
        cluster: dict[str, Any] = self.admin("POST", "/clusters", {"name": name, **extra})
        return cluster

    def scenario(self, **scenario: Any) -> None:
        self.admin("POST", "/scenarios", scenario)

    def journal(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.admin("GET", "/journal")["data"]
        return data

    def deletes(self, cluster_id: str) -> list[dict[str, Any]]:
        return [
            e
            for e in self.journal()
            if e["method"] == "DELETE" and e["path"] == f"/clusters/{cluster_id}"
        ]

    def calls_for(self, cluster_id: str) -> list[dict[str, Any]]:
        return [e for e in self.journal() if cluster_id in e["path"]]

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = self.admin("GET", "/state")
        return data

    def delete_operations(self, cluster_id: str) -> list[dict[str, Any]]:
        return [
            op
            for op in self.state()["operations"]
            if op["metadata"].get("type") == "cluster.delete"
            and op["metadata"].get("cluster_id") == cluster_id
        ]

    def cluster_exists(self, cluster_id: str) -> bool:
        return self.api("GET", f"/clusters/{cluster_id}").status_code == 200


class Arrivals:
    """Requests as they reach the simulator, before any injected latency.

    The simulator journals a request when it answers it; to act in the moment between a
    request's arrival and its answer (e.g. kill the operator while a DELETE is held by the
    latency fault), this wraps the in-process simulator's ASGI app and notes each request as
    it comes in (time, method, path). It observes only: the request then runs as before.
    """

    def __init__(self, sim: Sim) -> None:
        self.entries: list[tuple[float, str, str]] = []
        app = sim.server.sim
        inner = app.app

        async def spy(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                self.entries.append((time.time(), scope["method"], scope["path"]))
            await inner(scope, receive, send)

        app.app = spy  # type: ignore[assignment]

    def count(self, method: str, path: str) -> int:
        return sum(1 for _, m, p in list(self.entries) if m == method and p == path)


class Operator:
    """`akua-operator run --namespace NS` as a subprocess; logs go to a file."""

    def __init__(
        self, env: dict[str, str], namespace: str, log_path: Path, *extra_args: str
    ) -> None:
        self.env = env
        self.namespace = namespace
        self.extra_args = extra_args  # after `run --namespace NS`
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Operator:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [str(operator_binary()), "run", "--namespace", self.namespace, *self.extra_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def assert_alive(self) -> None:
        assert self.proc is not None
        assert self.proc.poll() is None, f"the operator exited:\n{self.logs()[-4000:]}"


# --- helpers used by the tests ----------------------------------------------------------------


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 60, interval: float = 0.2
) -> Any:
    """Poll ``check`` (from the test, not the operator) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def akc(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "akua.dev/v1alpha1",
        "kind": "AkuaCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def get_akc(kubectl: Any, name: str, namespace: str) -> dict[str, Any] | None:
    result = kubectl("get", "akc", name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond["type"] == type_:
            return dict(cond)
    return {}


def events(kubectl: Any, name: str, namespace: str) -> list[dict[str, Any]]:
    data = kubectl.json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )
    items: list[dict[str, Any]] = sorted(
        data["items"], key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"])
    )
    return items


def event_reasons(kubectl: Any, name: str, namespace: str) -> list[str]:
    return [e["reason"] for e in events(kubectl, name, namespace)]
