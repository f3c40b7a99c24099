"""The chart's operator pod, played by a local process (the test control planes have no kubelet).

Its command line and environment are taken from the Deployment that `helm install` created (args,
env values, fieldRefs resolved as the kubelet would), the token file holds what the chart's Secret
holds, and its kubeconfig carries a token of the chart's ServiceAccount from the TokenRequest API
(`kubectl create token`) and nothing else: it has exactly the chart's RBAC.
Used by tests/ship/test_chart_rbac_operator.py and tests/e2e/test_namespace_deletion.py.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

OPERATOR = Path(sys.executable).with_name("akua-operator")


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    ctx = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == ctx["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    path.chmod(0o600)
    return path


class PodProcess:
    """The Deployment's container, played by a local process."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self._fh, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def assert_running(self) -> None:
        code = self.proc.poll()
        assert code is None, f"the operator exited with {code}:\n{self.text()[-4000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._fh.close()


def run_like_the_pod(
    helm: Any,
    kubectl: Any,
    kubeconfig: Path,
    namespace: str,
    release: str,
    workdir: Path,
    index: int = 0,
    ports: tuple[int, int] | None = None,
) -> PodProcess:
    """Build the operator process (pod `index` of the Deployment) and start it. Pods have a
    network namespace each; local processes do not, so a second one gets `ports` (metrics,
    health) instead of the Deployment's."""
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = helm("get", "manifest", release, "-n", namespace).stdout
    dep = next(d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    sa = pod["serviceAccountName"]
    env = {"PATH": os.environ["PATH"], "HOME": str(workdir), "LANG": "C.UTF-8"}
    pod_name = f"{dep['metadata']['name']}-{index}"
    field_values = {"metadata.name": pod_name, "metadata.namespace": namespace}
    for e in c["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = field_values[e["valueFrom"]["fieldRef"]["fieldPath"]]
    # The credentials volume: the chart's Secret, read (as the kubelet would) by the admin.
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_volume = volumes["credentials"]["secret"]
    secret = kubectl.json("get", "secret", secret_volume["secretName"], "-n", namespace)
    mount = workdir / "credentials"
    mount.mkdir()
    for item in secret_volume["items"]:
        (mount / item["path"]).write_bytes(base64.b64decode(secret["data"][item["key"]]))
    token_file = Path(env["AKUA_TOKEN_FILE"])
    assert str(token_file.parent) == mounts["credentials"]
    env["AKUA_TOKEN_FILE"] = str(mount / token_file.name)
    # Kubernetes access: the ServiceAccount's token, nothing else.
    sa_token = kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()
    env["KUBECONFIG"] = str(token_kubeconfig(kubeconfig, sa_token, workdir / "sa.kubeconfig"))
    if ports is not None:
        env["AKUA_METRICS_PORT"], env["AKUA_HEALTH_PORT"] = (str(p) for p in ports)
    return PodProcess([str(OPERATOR), *c["args"]], env, workdir / "operator.log")


def wait_ready(port: int, proc: PodProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f"operator exited {proc.proc.returncode}:\n{proc.text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as rsp:
                if rsp.status == 200:
                    return
        except OSError as err:
            last = str(err)
        time.sleep(0.3)
    pytest.fail(f"/readyz not 200 within {timeout}s ({last}):\n{proc.text()[-4000:]}")
