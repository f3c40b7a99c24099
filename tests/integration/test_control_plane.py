"""The test control plane is a real Kubernetes API server: CRDs, finalizers, schema validation,
Helm, kopf, RBAC and ServiceAccount tokens all behave as they do in a cluster."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane import (
    REPO_ROOT,
    ControlPlane,
    TestbinMissingError,
    find_controller_manager,
    find_testbin,
)

pytestmark = pytest.mark.integration

CHARTS = Path(__file__).parent / "charts"
GROUP = "test.akua.dev"
CRD_NAME = f"widgets.{GROUP}"

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "integer", "minimum": 1},
                                    "color": {"type": "string", "enum": ["red", "blue"]},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"message": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}


def versions() -> dict[str, str]:
    """The versions hack/testbin/build.sh builds (its single source of truth)."""
    text = (REPO_ROOT / "hack" / "testbin" / "versions.env").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def eventually(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll `check` until it returns a truthy value; fail with its last result or error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except AssertionError as err:
            last = err
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            pytest.fail(f"condition not met within {timeout}s; last result: {last!r}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def widget_crd(kubectl: Any) -> str:
    kubectl.apply(WIDGET_CRD)
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    return CRD_NAME


# --------------------------------------------------------------------------- binaries


def test_missing_testbin_fails_with_instructions(tmp_path: Path) -> None:
    with pytest.raises(TestbinMissingError, match="AKUA_TESTBIN is not set") as unset:
        find_testbin({})
    assert "hack/testbin/build.sh" in str(unset.value)

    (tmp_path / "kubectl").write_text("#!/bin/sh\n")
    (tmp_path / "kubectl").chmod(0o755)
    with pytest.raises(TestbinMissingError) as incomplete:
        find_testbin({"AKUA_TESTBIN": str(tmp_path)})
    message = str(incomplete.value)
    assert "etcd, kube-apiserver, helm" in message
    assert "hack/testbin/build.sh" in message


def test_binaries_report_the_versions_built(kubectl: Any, helm: Any, testbin: Path) -> None:
    want = versions()
    version = kubectl.json("version")
    assert version["serverVersion"]["gitVersion"] == want["KUBERNETES_VERSION"]
    assert version["clientVersion"]["gitVersion"] == want["KUBERNETES_VERSION"]

    assert helm("version", "--short").stdout.startswith(want["HELM_VERSION"])
    etcd = subprocess.run(
        [testbin / "etcd", "--version"], capture_output=True, text=True, check=True
    )
    assert f"etcd Version: {want['ETCD_VERSION'].removeprefix('v')}" in etcd.stdout
    kcm = subprocess.run(
        [find_controller_manager(testbin), "--version"], capture_output=True, text=True, check=True
    )
    assert kcm.stdout.strip() == f"Kubernetes {want['KUBERNETES_VERSION']}"


def test_missing_controller_manager_fails_with_instructions(tmp_path: Path, testbin: Path) -> None:
    """A testbin directory without kube-controller-manager (built before build.sh built it):
    asking for the controllers fails before anything starts, naming the fix."""
    for name in ("etcd", "kube-apiserver", "kubectl", "helm"):
        (tmp_path / name).symlink_to(testbin / name)
    with pytest.raises(TestbinMissingError) as missing:
        ControlPlane(tmp_path / "cp", testbin=tmp_path, controller_manager=True)
    assert "kube-controller-manager" in str(missing.value)
    assert 'export AKUA_TESTBIN="$(hack/testbin/build.sh | tail -n1)"' in str(missing.value)
    ControlPlane(tmp_path / "cp", testbin=tmp_path)  # without controllers it is not needed


# --------------------------------------------------------------------------- API semantics


def test_crd_applied_with_kubectl_serves_custom_objects(
    kubectl: Any, widget_crd: str, namespace: str
) -> None:
    established = kubectl(
        "get",
        "crd",
        widget_crd,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Established')].status}",
    ).stdout
    assert established == "True"

    kubectl.apply(widget("w1", size=3, color="red"), "-n", namespace)

    got = kubectl.json("get", "widget", "w1", "-n", namespace)
    assert got["spec"] == {"size": 3, "color": "red"}
    assert got["metadata"]["uid"]
    listed = kubectl.json("get", "widgets", "-n", namespace)
    assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]


def test_finalizer_keeps_deleted_object_until_removed(
    kubectl: Any, widget_crd: str, namespace: str
) -> None:
    obj = widget("held", size=1)
    obj["metadata"]["finalizers"] = ["test.akua.dev/hold"]
    kubectl.apply(obj, "-n", namespace)

    kubectl("delete", "widget", "held", "-n", namespace, "--wait=false")

    doomed = kubectl.json("get", "widget", "held", "-n", namespace)
    assert doomed["metadata"]["deletionTimestamp"]
    assert doomed["metadata"]["finalizers"] == ["test.akua.dev/hold"]
    # Still there and still writable (metadata/status), as an operator would need.
    kubectl("annotate", "widget", "held", "-n", namespace, "test.akua.dev/seen=yes")
    again = kubectl.json("get", "widget", "held", "-n", namespace)
    assert again["metadata"]["annotations"]["test.akua.dev/seen"] == "yes"
    assert again["metadata"]["deletionTimestamp"] == doomed["metadata"]["deletionTimestamp"]

    kubectl(
        "patch",
        "widget",
        "held",
        "-n",
        namespace,
        "--type=json",
        "-p",
        '[{"op": "remove", "path": "/metadata/finalizers"}]',
    )
    kubectl("wait", "--for=delete", "widget/held", "-n", namespace, "--timeout=30s")
    gone = kubectl("get", "widget", "held", "-n", namespace, check=False)
    assert gone.returncode != 0
    assert 'widgets.test.akua.dev "held" not found' in gone.stderr


def test_schema_violations_are_rejected_with_the_api_servers_message(
    kubectl: Any, widget_crd: str, namespace: str
) -> None:
    wrong_type = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=json.dumps(widget("bad", size="three")),
    )
    assert wrong_type.returncode != 0
    assert 'The Widget "bad" is invalid' in wrong_type.stderr
    assert "spec.size in body must be of type integer" in wrong_type.stderr

    too_small = kubectl(
        "apply", "-n", namespace, "-f", "-", check=False, input=json.dumps(widget("bad", size=0))
    )
    assert "spec.size in body should be greater than or equal to 1" in too_small.stderr

    bad_enum = kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        check=False,
        input=json.dumps(widget("bad", size=2, color="green")),
    )
    assert 'spec.color: Unsupported value: "green"' in bad_enum.stderr

    missing = kubectl("get", "widget", "bad", "-n", namespace, check=False)
    assert "not found" in missing.stderr


# --------------------------------------------------------------------------- clients


def test_helm_installs_a_chart(helm: Any, kubectl: Any, namespace: str) -> None:
    helm(
        "install",
        "tiny",
        CHARTS / "tiny",
        "-n",
        namespace,
        "--set",
        "greeting=hi from helm",
        "--wait",
        "--timeout=60s",
    )

    cm = kubectl.json("get", "configmap", "tiny-greeting", "-n", namespace)
    assert cm["data"]["greeting"] == "hi from helm"
    assert cm["data"]["kubeVersion"] == versions()["KUBERNETES_VERSION"]
    releases = json.loads(helm("list", "-n", namespace, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in releases] == [("tiny", "deployed")]

    helm("uninstall", "tiny", "-n", namespace, "--wait")
    assert kubectl("get", "configmap", "tiny-greeting", "-n", namespace, check=False).returncode


def test_python_client_accepts_the_kubeconfig(kube_client: Any, namespace: str) -> None:
    from kubernetes import client

    ns = client.CoreV1Api(kube_client).read_namespace(namespace)
    assert ns.status.phase == "Active"


KOPF_HANDLERS = """
import kopf

@kopf.on.create("test.akua.dev", "v1", "widgets")
def greet(spec, patch, **_):
    patch.status["message"] = f"kopf saw size {spec['size']}"
"""


def test_kopf_operator_reacts_to_an_object(
    kubectl: Any, kube_env: dict[str, str], widget_crd: str, namespace: str, tmp_path: Path
) -> None:
    handlers = tmp_path / "handlers.py"
    handlers.write_text(textwrap.dedent(KOPF_HANDLERS))
    log_path = tmp_path / "kopf.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "-n", namespace, handlers],
            env=kube_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            kubectl.apply(widget("greeted", size=7), "-n", namespace)

            def message() -> str:
                assert proc.poll() is None, f"kopf exited:\n{log_path.read_text()}"
                return str(
                    kubectl.json("get", "widget", "greeted", "-n", namespace)
                    .get("status", {})
                    .get("message", "")
                )

            try:
                assert eventually(message, timeout=60) == "kopf saw size 7"
            except BaseException:
                print(log_path.read_text())
                raise
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --------------------------------------------------------------------------- auth


def test_serviceaccount_token_is_authenticated_and_bound_by_rbac(
    kubectl: Any, control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    kubectl("create", "serviceaccount", "robot", "-n", namespace)
    token = kubectl("create", "token", "robot", "-n", namespace, "--duration=10m").stdout.strip()
    robot = control_plane.write_kubeconfig(tmp_path / "robot", token=token, namespace=namespace)

    def as_robot(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl("--kubeconfig", robot, *args, check=check)

    whoami = json.loads(as_robot("auth", "whoami", "-o", "json").stdout)
    assert whoami["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:robot"

    denied = as_robot("get", "configmaps", check=False)
    assert denied.returncode != 0
    assert (
        f'User "system:serviceaccount:{namespace}:robot" cannot list resource "configmaps"'
        in denied.stderr
    )

    kubectl("create", "role", "cm-reader", "-n", namespace, "--verb=get,list", "--resource=cm")
    kubectl(
        "create",
        "rolebinding",
        "robot-reads-cm",
        "-n",
        namespace,
        "--role=cm-reader",
        f"--serviceaccount={namespace}:robot",
    )
    eventually(lambda: as_robot("get", "configmaps", check=False).returncode == 0, timeout=15)
    can = as_robot("auth", "can-i", "--list").stdout
    assert "configmaps" in can


# --------------------------------------------------------------------------- the CLI


def _wait_listening_stopped(port: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.1)
    return False


@pytest.fixture
def cli_process(testbin: Path, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    env = dict(os.environ, AKUA_TESTBIN=str(testbin))
    proc = subprocess.Popen(
        [sys.executable, REPO_ROOT / "hack" / "controlplane.py", "up", "--dir", tmp_path / "cp"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_up_serves_until_sigterm(
    cli_process: subprocess.Popen[str], kubectl: Any, tmp_path: Path
) -> None:
    assert cli_process.stdout is not None and cli_process.stderr is not None
    ready, _, _ = select.select([cli_process.stdout], [], [], 120)
    assert ready, "controlplane.py up printed nothing within 120s"
    kubeconfig = Path(cli_process.stdout.readline().strip())
    assert kubeconfig == tmp_path / "cp" / "kubeconfig"

    ns = kubectl("--kubeconfig", kubeconfig, "get", "namespace", "default", "-o", "name")
    assert ns.stdout.strip() == "namespace/default"
    server = kubectl(
        "--kubeconfig", kubeconfig, "config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"
    ).stdout
    port = int(server.rsplit(":", 1)[1])

    cli_process.send_signal(signal.SIGTERM)
    assert cli_process.wait(30) == 0, cli_process.stderr.read()
    assert _wait_listening_stopped(port), f"kube-apiserver still listening on {port}"
    assert "controlplane: stopped" in cli_process.stderr.read()
    assert (tmp_path / "cp" / "logs" / "kube-apiserver.log").stat().st_size > 0


# --------------------------------------------------------------------------- with controllers


def test_with_the_controller_manager_a_deleted_namespace_goes_away_with_its_objects(
    kcm_kubectl: Any, kcm_control_plane: ControlPlane
) -> None:
    ns = f"t-kcm-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
    kcm_kubectl("create", "namespace", ns)
    kcm_kubectl("create", "configmap", "held", "-n", ns)
    kcm_kubectl(
        "patch", "configmap", "held", "-n", ns, "-p", '{"metadata":{"finalizers":["t.akua.dev/x"]}}'
    )
    kcm_kubectl("delete", "namespace", ns, "--wait=false")
    # The namespace controller deleted the ConfigMap (it waits on its finalizer) ...
    kcm_kubectl(
        "wait", "configmap/held", "-n", ns, "--for=jsonpath={.metadata.deletionTimestamp}",
        "--timeout=60s", timeout=90,
    )  # fmt: skip
    assert kcm_kubectl.json("get", "namespace", ns)["status"]["phase"] == "Terminating"
    # ... and once nothing holds it the namespace is gone.
    kcm_kubectl(
        "patch", "configmap", "held", "-n", ns, "--type=merge", "-p",
        '{"metadata":{"finalizers":null}}',
    )  # fmt: skip
    kcm_kubectl("wait", f"namespace/{ns}", "--for=delete", "--timeout=60s", timeout=90)
    log = kcm_control_plane.log_files()["kube-controller-manager"].read_text()
    assert "--leader-elect=false" in log.splitlines()[0]


def test_with_the_controller_manager_owned_objects_are_garbage_collected(
    kcm_kubectl: Any,
) -> None:
    owner = kcm_kubectl.json("create", "configmap", f"owner-{os.getpid()}", "-n", "default")
    kcm_kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"owned-{os.getpid()}",
                "namespace": "default",
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "name": owner["metadata"]["name"],
                        "uid": owner["metadata"]["uid"],
                    }
                ],
            },
        }
    )
    kcm_kubectl("delete", "configmap", owner["metadata"]["name"], "-n", "default")
    kcm_kubectl(
        "wait", f"configmap/owned-{os.getpid()}", "-n", "default", "--for=delete",
        "--timeout=60s", timeout=90,
    )  # fmt: skip


def test_the_shared_control_plane_runs_no_controller_manager(
    kubectl: Any, control_plane: ControlPlane
) -> None:
    """Tests on the shared control plane rely on deleted namespaces staying Terminating."""
    assert control_plane.controller_manager is None
    ns = f"t-nokcm-{os.getpid()}-{int(time.monotonic() * 1000) % 100000}"
    kubectl("create", "namespace", ns)
    kubectl("create", "configmap", "stays", "-n", ns)
    kubectl("delete", "namespace", ns, "--wait=false")
    assert kubectl.json("get", "namespace", ns)["status"]["phase"] == "Terminating"
    assert kubectl("get", "configmap", "stays", "-n", ns).returncode == 0


# --------------------------------------------------------------------------- the fixtures


FAILING_TEST = """
def test_fails_against_the_control_plane(kubectl, namespace):
    kubectl("get", "configmap", "does-not-exist", "-n", namespace)
"""


def _run_inner_pytest(
    tmp_path: Path, env: dict[str, str], test: str = FAILING_TEST
) -> subprocess.CompletedProcess[str]:
    """Run pytest on one failing test in a separate process, with tests/conftest.py as a plugin."""
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    integration: real apiserver\n")
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(test))
    argv: list[str | Path] = [sys.executable, "-m", "pytest", "-p", "conftest"]
    argv += ["-p", "no:cacheprovider", "--cp-log-lines", "7", "-c", tmp_path / "pytest.ini"]
    return subprocess.run(
        [*argv, tmp_path / "test_inner.py"],
        env=env | {"PYTHONPATH": str(REPO_ROOT / "tests")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_failed_test_report_carries_the_control_plane_log_tail(
    testbin: Path, tmp_path: Path
) -> None:
    result = _run_inner_pytest(tmp_path, dict(os.environ, AKUA_TESTBIN=str(testbin)))
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert 'configmaps "does-not-exist" not found' in out
    assert "control plane log tail (call)" in out
    assert "----- kube-apiserver (last 7 lines of " in out
    assert "----- etcd (last 7 lines of " in out
    assert "control plane (https://127.0.0.1:" in out  # the summary line with the logs' place


def test_missing_testbin_stops_the_run_before_any_test(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AKUA_TESTBIN"}
    result = _run_inner_pytest(tmp_path, env)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "AKUA_TESTBIN is not set" in result.stderr
    assert 'export AKUA_TESTBIN="$(hack/testbin/build.sh | tail -n1)"' in result.stderr


def test_missing_controller_manager_stops_the_run_before_any_test(
    tmp_path: Path, testbin: Path
) -> None:
    """A test that needs kube-controller-manager, and a testbin without it: the run stops at
    once (no test runs), naming the fix."""
    old_testbin = tmp_path / "testbin"
    old_testbin.mkdir()
    for name in ("etcd", "kube-apiserver", "kubectl", "helm"):
        (old_testbin / name).symlink_to(testbin / name)
    test = "def test_needs_kcm(kcm_kubectl):\n    kcm_kubectl('get', 'ns')\n"
    result = _run_inner_pytest(tmp_path, dict(os.environ, AKUA_TESTBIN=str(old_testbin)), test)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "does not hold an executable kube-controller-manager" in result.stderr
    assert 'export AKUA_TESTBIN="$(hack/testbin/build.sh | tail -n1)"' in result.stderr
