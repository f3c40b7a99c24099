"""`kubectl akua`, run as a user runs it: the real kubectl finds the `kubectl-akua` plugin on
PATH, against the real control plane, the simulator and the operator as a process. Resources in
each phase (creating at an approval step, ready, deleting with a step waiting for approval,
stalled on missing credentials, protected, retained after a failed delete); the assertions are
on what a person reads, and on what `orphan` and `retry` do to a held deletion."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Operator, Sim, akc, condition, get_akc, wait_for


@pytest.fixture
def plugin_env(kube_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """PATH with a directory holding only the installed `kubectl-akua` console script."""
    script = Path(sys.executable).parent / "kubectl-akua"
    assert script.exists(), f"{script} is missing: run `make venv` (uv sync) first"
    bin_dir = tmp_path / "plugins"
    bin_dir.mkdir()
    (bin_dir / "kubectl-akua").symlink_to(script)
    env = dict(kube_env)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    return env


class Akua:
    def __init__(self, kubectl: Any, env: dict[str, str], namespace: str) -> None:
        self.kubectl, self.env, self.namespace = kubectl, env, namespace

    def __call__(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        result = self.kubectl(
            "akua", *args, "-n", self.namespace, input=input, env=self.env, check=False
        )
        if check:
            assert result.returncode == 0, (
                f"exit {result.returncode}: {result.stderr}{result.stdout}"
            )
        return result


def said(text: str) -> str:
    """What a person reads, with the table padding collapsed to single spaces."""
    return " ".join(text.split())


def _stalled(kubectl: Any, name: str, namespace: str, reason: str) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(
        f"{name} Stalled {reason}",
        lambda: (
            (o := get_akc(kubectl, name, namespace))
            and condition(o, "Stalled").get("reason") == reason
            and condition(o, "Stalled").get("status") == "True"
            and o
        ),
        timeout=90,
    )
    return obj


def _waiting_for(kubectl: Any, name: str, namespace: str, prefix: str) -> dict[str, Any]:
    obj: dict[str, Any] = wait_for(
        f"{name} waiting for {prefix}",
        lambda: (
            (o := get_akc(kubectl, name, namespace))
            and str((o.get("status") or {}).get("waitingFor", "")).startswith(prefix)
            and o
        ),
        timeout=90,
    )
    return obj


def test_kubectl_akua_tells_each_phase_and_orphan_and_retry_change_a_held_deletion(
    kubectl: Any, sim: Sim, namespace: str, operator: Operator, plugin_env: dict[str, str]
) -> None:
    akua = Akua(kubectl, plugin_env, namespace)
    ids = {
        n: sim.seed(f"{n}-{namespace}")["id"]
        for n in ("ready", "held", "nocreds", "guarded", "retained")
    }
    sim.scenario(
        operation_type="cluster.create",
        cluster_name=f"new-{namespace}",
        mode="approval",
        step="provision_workers",
        times=None,
    )
    sim.scenario(
        operation_type="cluster.delete",
        cluster_id=ids["held"],
        mode="approval",
        step="delete_control_plane",
    )
    sim.scenario(
        operation_type="cluster.delete",
        cluster_id=ids["retained"],
        mode="fail",
        step="drain_workloads",
        retryable=False,
        error_message="a PodDisruptionBudget blocks the drain",
        times=1,
    )
    kubectl.apply(akc("ready", namespace, clusterId=ids["ready"]))
    kubectl.apply(akc("held", namespace, clusterId=ids["held"]))
    kubectl.apply(
        akc("guarded", namespace, clusterId=ids["guarded"], deletion={"protection": True})
    )
    kubectl.apply(
        akc("retained", namespace, clusterId=ids["retained"], deletion={"onFailure": "Retain"})
    )
    kubectl.apply(
        akc(
            "nocreds",
            namespace,
            clusterId=ids["nocreds"],
            credentials={"secretRef": {"name": "team-token"}},
        )
    )
    creating = akc("creating", namespace, regionId="eu-west-1")
    creating["spec"]["name"] = f"new-{namespace}"
    kubectl.apply(creating)
    operator.start()
    for name in ("ready", "held", "guarded", "retained"):
        wait_for(
            f"{name} ready",
            lambda name=name: (
                condition(get_akc(kubectl, name, namespace), "Ready").get("status") == "True"
            ),
        )
    for name in ("held", "guarded", "retained", "nocreds"):
        kubectl("delete", "akc", name, "-n", namespace, "--wait=false")

    # --- ready: nothing awaited ---
    out = akua("status", "ready").stdout
    assert f"AkuaCluster {namespace}/ready" in out
    assert ids["ready"] in out
    assert "Ready" in out
    assert "Waiting for nothing" in said(out)
    assert "\x1b[" not in out  # piped: plain text, no escape codes
    data = json.loads(akua("status", "ready", "-o", "json").stdout)
    assert data["phase"] == "Ready"
    assert data["waitingFor"] is None
    assert data["status"]["clusterId"] == ids["ready"]

    # --- creating, held at an approval step in Akua ---
    _waiting_for(kubectl, "creating", namespace, "person: step provision_workers")
    out = akua("status", "creating").stdout
    assert "waits for approval in Akua" in out
    assert "cluster.create" in out
    assert "3/4 steps" in out
    assert "last read from Akua" in out

    # --- deleting with a step waiting for approval ---
    _waiting_for(kubectl, "held", namespace, "person: step delete_control_plane")
    out = akua("status", "held").stdout
    assert "deleting for" in out
    assert "cluster.delete" in out and "RUNNING" in out
    assert "2/4 steps" in out
    lines = {
        ln.split()[2]: ln
        for ln in out.splitlines()
        if ln.strip()[:1] in "✓▶·✗-" and len(ln.split()) > 3
    }
    assert "completed" in lines["drain_workloads"]
    assert "running" in lines["delete_control_plane"]
    assert "waits for a person in Akua" in lines["delete_control_plane"]
    assert "pending" in lines["release_network"]

    # --- stalled on missing credentials: the way out, with the plugin command ---
    _stalled(kubectl, "nocreds", namespace, "CredentialsUnavailable")
    wait_for(
        "the deletion's message",
        lambda: (
            "akua.dev/orphan"
            in condition(get_akc(kubectl, "nocreds", namespace), "Stalled").get("message", "")
        ),
    )
    out = akua("status", "nocreds").stdout
    assert "Waiting for person: CredentialsUnavailable" in said(out)
    assert "team-token" in out
    assert f"kubectl akua orphan nocreds -n {namespace}" in out

    # --- protected ---
    _stalled(kubectl, "guarded", namespace, "DeletionProtected")
    out = akua("status", "guarded").stdout
    assert "protected (spec.deletion.protection)" in out
    assert "person: DeletionProtected" in out
    assert '"protection":false' in out

    # --- retained after a failed delete ---
    _stalled(kubectl, "retained", namespace, "DeleteRetained")

    # --- list ---
    out = akua("list").stdout
    rows = {ln.split()[0]: ln for ln in out.splitlines()[1:] if ln.strip()}
    assert set(rows) == {"ready", "held", "nocreds", "guarded", "retained", "creating"}
    assert "Ready" in rows["ready"]
    assert "Stalled/DeletionProtected" in rows["guarded"]
    assert "delete 3/4 delete_control_plane" in rows["held"]
    out = akua("list", "--deleting").stdout
    assert {ln.split()[0] for ln in out.splitlines()[1:] if ln.strip()} == {
        "held",
        "nocreds",
        "guarded",
        "retained",
    }
    out = akua("list", "--stalled").stdout
    assert {ln.split()[0] for ln in out.splitlines()[1:] if ln.strip()} == {
        "nocreds",
        "guarded",
        "retained",
    }

    # --- orphan: asks first; "n" changes nothing ---
    result = akua("orphan", "nocreds", input="n\n", check=False)
    assert result.returncode == 2
    assert f"Akua cluster {ids['nocreds']}" in result.stdout
    assert "will NOT be deleted" in result.stdout
    assert "Aborted" in result.stdout
    assert get_akc(kubectl, "nocreds", namespace) is not None
    # a watcher sees the end
    watcher = subprocess.Popen(
        [str(kubectl.binary), "akua", "status", "nocreds", "-n", namespace, "--watch"],
        env=plugin_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        result = akua("orphan", "nocreds", input="y\n")
        assert "Done: akua.dev/orphan=true" in result.stdout
        wait_for("nocreds released", lambda: get_akc(kubectl, "nocreds", namespace) is None)
        try:
            watched, _ = watcher.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            watcher.kill()
            o, e = watcher.communicate()
            raise AssertionError(f"watch did not end:\n{o[-3000:]}\n{e[-3000:]}") from None
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert f"AkuaCluster {namespace}/nocreds was deleted" in watched
    assert sim.cluster_exists(ids["nocreds"])
    assert sim.deletes(ids["nocreds"]) == []

    # --- retry: the retained deletion goes on and deletes the cluster ---
    result = akua("retry", "retained", "--yes")
    assert "will be DELETED" in result.stdout
    wait_for(
        "retained deleted", lambda: get_akc(kubectl, "retained", namespace) is None, timeout=90
    )
    assert not sim.cluster_exists(ids["retained"])
    assert [op["state"] for op in sim.delete_operations(ids["retained"])] == ["FAILED", "SUCCEEDED"]

    # --- orphan the deletion held at an approval step: released, the cluster stays ---
    akua("orphan", "held", "--yes")
    wait_for("held released", lambda: get_akc(kubectl, "held", namespace) is None)
    assert sim.cluster_exists(ids["held"])


def test_orphan_shows_an_admission_denial_plainly(
    kubectl: Any, sim: Sim, namespace: str, crd: str, plugin_env: dict[str, str]
) -> None:
    policy = f"no-orphan-{namespace}"
    kubectl.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["akua.dev"],
                            "apiVersions": ["*"],
                            "operations": ["UPDATE"],
                            "resources": ["akuaclusters"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.metadata.annotations) || "
                        "!('akua.dev/orphan' in object.metadata.annotations)",
                        "message": "orphaning AkuaClusters is not allowed in this namespace",
                    }
                ],
            },
        }
    )
    kubectl.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {
                "policyName": policy,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    try:
        cluster_id = sim.seed(f"prod-{namespace}")["id"]
        kubectl.apply(akc("prod", namespace, clusterId=cluster_id))
        kubectl.apply(akc("probe", namespace, clusterId="clu_probe"))
        # The policy takes effect a moment after it is created: wait until it refuses a plain
        # kubectl annotate of another resource, then run the plugin once.
        wait_for(
            "the policy to take effect",
            lambda: (
                "not allowed in this namespace"
                in kubectl(
                    "annotate",
                    "akc",
                    "probe",
                    "-n",
                    namespace,
                    "--overwrite",
                    f"akua.dev/orphan={time.monotonic()}",
                    check=False,
                ).stderr
            ),
        )
        akua = Akua(kubectl, plugin_env, namespace)
        result = akua("orphan", "prod", "--yes", check=False)
        assert result.returncode == 1, result.stdout
        assert "Refused by the API server" in result.stderr
        assert "orphaning AkuaClusters is not allowed in this namespace" in result.stderr
        assert "Nothing changed." in result.stderr
        obj = get_akc(kubectl, "prod", namespace)
        assert obj is not None
        assert "akua.dev/orphan" not in (obj["metadata"].get("annotations") or {})
    finally:
        kubectl(
            "delete", "validatingadmissionpolicybinding", policy, "--ignore-not-found", check=False
        )
        kubectl("delete", "validatingadmissionpolicy", policy, "--ignore-not-found", check=False)
