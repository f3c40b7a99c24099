"""The API server itself rejects invalid AkuaCluster specs, with the message the user sees.

Each case applies a manifest with the real kubectl against the real kube-apiserver (the committed
CRD, its OpenAPI limits and enums from the Akua contract, and its CEL rules) and asserts on
kubectl's own error output.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"


@pytest.fixture(scope="module")
def crd(kubectl: Any) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")


def manifest(namespace: str, spec: dict[str, Any], name: str = "c1") -> dict[str, Any]:
    return {
        "apiVersion": "akua.dev/v1alpha1",
        "kind": "AkuaCluster",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def rejected(kubectl: Any, namespace: str, spec: dict[str, Any], name: str = "c1") -> str:
    result = kubectl(
        "apply", "-f", "-", input=json.dumps(manifest(namespace, spec, name)), check=False
    )
    assert result.returncode != 0, f"accepted: {spec}\n{result.stdout}"
    assert "is invalid" in result.stderr, result.stderr
    return str(result.stderr)


def accepted(kubectl: Any, namespace: str, spec: dict[str, Any], name: str = "c1") -> None:
    kubectl.apply(manifest(namespace, spec, name))


CREATE = {"name": "prod", "regionId": "reg_eu"}


@pytest.mark.usefixtures("crd")
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {},
            "name is required unless adopting an existing cluster (clusterId)",
        ),
        (
            {"name": "prod"},
            "regionId is required when creating or importing a cluster",
        ),
        (
            {"regionId": "reg_eu"},
            "name is required unless adopting an existing cluster (clusterId)",
        ),
        (
            {**CREATE, "provider": "imported_byoc"},
            "kubeconfigSecretRef is required to import a cluster (provider imported_byoc)",
        ),
        (
            {**CREATE, "name": "x" * 101},
            "spec.name: Too long: may not be more than 100 bytes",
        ),
        (
            {**CREATE, "regionId": "r" * 55},
            "spec.regionId: Too long: may not be more than 54 bytes",
        ),
        (
            {**CREATE, "name": ""},
            'spec.name: Invalid value: "": spec.name in body should be at least 1 chars long',
        ),
        (
            {**CREATE, "networkProfile": "flannel"},
            'spec.networkProfile: Unsupported value: "flannel": supported values: '
            '"linux_cilium", "mixed_os_calico"',
        ),
        (
            {**CREATE, "provider": "eks"},
            'spec.provider: Unsupported value: "eks": supported values: '
            '"managed_kaas", "imported_byoc"',
        ),
        (
            {"clusterId": "c" * 55},
            "spec.clusterId: Too long: may not be more than 54 bytes",
        ),
        (
            {**CREATE, "suspended": "yes"},
            'spec.suspended: Invalid value: "string": spec.suspended in body must be of type '
            "boolean",
        ),
        (
            {**CREATE, "deletion": {"policy": "Keep"}},
            'spec.deletion.policy: Unsupported value: "Keep": supported values: "Delete", "Orphan"',
        ),
    ],
    ids=[
        "empty",
        "create-without-region",
        "create-without-name",
        "import-without-kubeconfig",
        "name-too-long",
        "region-too-long",
        "name-empty",
        "network-profile-enum",
        "provider-enum",
        "cluster-id-too-long",
        "suspended-not-bool",
        "deletion-policy-enum",
    ],
)
def test_invalid_spec_is_rejected_with_a_clear_message(
    kubectl: Any, namespace: str, spec: dict[str, Any], expected: str
) -> None:
    message = rejected(kubectl, namespace, spec)
    assert expected in message, message
    assert kubectl("get", "akc", "c1", "-n", namespace, check=False).returncode != 0


@pytest.mark.usefixtures("crd")
def test_valid_specs_are_accepted(kubectl: Any, namespace: str) -> None:
    accepted(kubectl, namespace, {"clusterId": "clu_abc"}, "adopt-only-id")
    accepted(kubectl, namespace, CREATE, "create")
    accepted(
        kubectl,
        namespace,
        {
            **CREATE,
            "provider": "imported_byoc",
            "kubeconfigSecretRef": {"name": "kc"},
        },
        "import",
    )
    obj = kubectl.json("get", "akc", "import", "-n", namespace)
    # Defaults the API server fills in: the Secret key, suspended, the deletion policy.
    assert obj["spec"]["kubeconfigSecretRef"] == {"name": "kc", "key": "token"}
    assert obj["spec"]["suspended"] is False
    assert obj["spec"]["deletion"]["policy"] == "Delete"
    created = kubectl.json("get", "akc", "create", "-n", namespace)
    assert created["spec"]["provider"] == "managed_kaas"


@pytest.mark.usefixtures("crd")
def test_cluster_id_is_immutable_once_set(kubectl: Any, namespace: str) -> None:
    accepted(kubectl, namespace, {"clusterId": "clu_abc", "name": "prod"})
    message = rejected(kubectl, namespace, {"clusterId": "clu_other", "name": "prod"})
    assert "clusterId is immutable once set" in message, message
    message = rejected(kubectl, namespace, {"name": "prod", "regionId": "reg_eu"})
    assert "clusterId is immutable once set" in message, message
    # Other fields stay editable.
    accepted(kubectl, namespace, {"clusterId": "clu_abc", "name": "renamed", "suspended": True})
    obj = kubectl.json("get", "akc", "c1", "-n", namespace)
    assert obj["spec"]["clusterId"] == "clu_abc"
    assert obj["spec"]["name"] == "renamed"


@pytest.mark.usefixtures("crd")
def test_a_created_resource_may_adopt_later(kubectl: Any, namespace: str) -> None:
    # Nothing created or recorded yet (no status.clusterId): adopting later is fine.
    accepted(kubectl, namespace, CREATE)
    accepted(kubectl, namespace, {**CREATE, "clusterId": "clu_abc"})
    assert kubectl.json("get", "akc", "c1", "-n", namespace)["spec"]["clusterId"] == "clu_abc"


def _record_cluster_id(kubectl: Any, namespace: str, name: str, cluster_id: str) -> None:
    # What the operator writes after its create succeeded.
    kubectl(
        "patch", "akc", name, "-n", namespace, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"clusterId": cluster_id}}),
    )  # fmt: skip


@pytest.mark.usefixtures("crd")
def test_spec_cluster_id_cannot_switch_away_from_the_cluster_the_operator_made(
    kubectl: Any, namespace: str
) -> None:
    accepted(kubectl, namespace, CREATE, "made")
    _record_cluster_id(kubectl, namespace, "made", "clu_made")
    message = rejected(kubectl, namespace, {**CREATE, "clusterId": "clu_other"}, "made")
    assert (
        "spec.clusterId clu_other differs from the Akua cluster this resource already created "
        "or manages (status.clusterId clu_made); create a new AkuaCluster to adopt another "
        "cluster"
    ) in message, message
    assert "clusterId" not in kubectl.json("get", "akc", "made", "-n", namespace)["spec"]
    # Pinning the cluster it made is fine, and the operator can keep writing its status.
    accepted(kubectl, namespace, {**CREATE, "clusterId": "clu_made"}, "made")
    _record_cluster_id(kubectl, namespace, "made", "clu_made")
    accepted(kubectl, namespace, {**CREATE, "clusterId": "clu_made", "suspended": True}, "made")
    obj = kubectl.json("get", "akc", "made", "-n", namespace)
    assert obj["spec"]["clusterId"] == "clu_made"
    assert obj["spec"]["suspended"] is True


def _doc_examples() -> list[dict[str, Any]]:
    found = []
    for doc in ("resource.md", "gitops.md"):
        text = (ROOT / "docs" / doc).read_text()
        for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL):
            for obj in yaml.safe_load_all(block):
                if isinstance(obj, dict) and obj.get("kind") == "AkuaCluster":
                    found.append(obj)
    return found


@pytest.mark.usefixtures("crd")
def test_the_examples_in_the_docs_are_accepted(kubectl: Any, namespace: str) -> None:
    examples = _doc_examples()
    assert len(examples) >= 5
    for obj in examples:
        obj["metadata"]["namespace"] = namespace
        kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj))


@pytest.mark.usefixtures("crd")
def test_a_new_object_reads_as_in_progress_before_the_operator_writes(
    kubectl: Any, namespace: str
) -> None:
    # No operator runs here. kstatus (Flux) would call an object without status "Current";
    # the CRD's one status default makes it "in progress" (observedGeneration < generation).
    accepted(kubectl, namespace, CREATE)
    obj = kubectl.json("get", "akc", "c1", "-n", namespace)
    assert obj["metadata"]["generation"] == 1
    assert obj["status"] == {"observedGeneration": 0}
    # The operator's first status write replaces it.
    kubectl(
        "patch", "akc", "c1", "-n", namespace, "--subresource=status", "--type=merge",
        "-p", '{"status":{"observedGeneration":1}}',
    )  # fmt: skip
    assert kubectl.json("get", "akc", "c1", "-n", namespace)["status"] == {"observedGeneration": 1}
