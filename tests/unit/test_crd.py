"""The committed CRD is what the pydantic models generate and declares every status field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from akua_operator.resource import crd as crdgen
from akua_operator.resource.models import (
    AkuaClusterSpec,
    AkuaClusterStatus,
    CreateRequestStatus,
    DeletionStatus,
    LifecycleStatus,
    OperationStatus,
    OperationStepStatus,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"


def test_committed_crd_matches_generation() -> None:
    assert COMMITTED.read_text() == crdgen.crd_yaml(), (
        "charts/akua-operator/files/crds/akuaclusters.akua.dev.yaml is stale: regenerate it with "
        "`akua-operator crd > charts/akua-operator/files/crds/akuaclusters.akua.dev.yaml`"
    )


def _version() -> dict[str, Any]:
    doc = yaml.safe_load(COMMITTED.read_text())
    assert doc["metadata"]["name"] == "akuaclusters.akua.dev"
    assert doc["spec"]["scope"] == "Namespaced"
    assert doc["spec"]["names"]["shortNames"] == ["akc"]
    (version,) = doc["spec"]["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    return version  # type: ignore[no-any-return]


def _assert_declares(model: type[BaseModel], schema: dict[str, Any], where: str) -> None:
    props = schema["properties"]
    for name, field in model.model_fields.items():
        alias = field.alias or name
        assert alias in props, f"{where}.{alias} is not declared in the CRD schema"


def test_every_status_field_is_declared() -> None:
    status = _version()["schema"]["openAPIV3Schema"]["properties"]["status"]
    _assert_declares(AkuaClusterStatus, status, "status")
    _assert_declares(OperationStatus, status["properties"]["operation"], "status.operation")
    _assert_declares(
        OperationStepStatus,
        status["properties"]["operation"]["properties"]["steps"]["items"],
        "status.operation.steps[]",
    )
    _assert_declares(DeletionStatus, status["properties"]["deletion"], "status.deletion")
    lifecycle = status["properties"]["lifecycle"]
    _assert_declares(LifecycleStatus, lifecycle, "status.lifecycle")
    _assert_declares(
        CreateRequestStatus,
        lifecycle["properties"]["createRequest"],
        "status.lifecycle.createRequest",
    )
    # Never a place for the kubeconfig itself: only the Secret reference.
    assert set(lifecycle["properties"]["createRequest"]["properties"]) == {
        "provider",
        "name",
        "regionId",
        "networkProfile",
        "kubeconfigSecretRef",
        "workspaceId",
    }
    # kopf's progress records live in status.kopf: pruned, kopf would never run a handler again
    kopf_records = status["properties"]["kopf"]
    assert kopf_records["type"] == "object"
    assert kopf_records["x-kubernetes-preserve-unknown-fields"] is True
    cond = status["properties"]["conditions"]
    assert cond["x-kubernetes-list-type"] == "map"
    assert "observedGeneration" in cond["items"]["properties"]


def test_spec_fields_limits_and_rules() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    _assert_declares(AkuaClusterSpec, spec, "spec")
    props = spec["properties"]
    assert props["clusterId"]["maxLength"] == 54
    assert props["name"]["maxLength"] == 100
    assert props["regionId"]["maxLength"] == 54
    assert props["networkProfile"]["enum"] == ["linux_cilium", "mixed_os_calico"]
    assert props["provider"]["enum"] == ["managed_kaas", "imported_byoc"]
    deletion = props["deletion"]["properties"]
    assert deletion["policy"]["enum"] == ["Delete", "Orphan"]
    assert deletion["policy"]["default"] == "Delete"
    assert deletion["onFailure"]["default"] == "Release"
    assert deletion["maxRetries"]["default"] == 3
    assert props["credentials"]["properties"]["workspaceId"]["maxLength"] == 53
    rules = [v["message"] for v in spec["x-kubernetes-validations"]]
    assert "clusterId is immutable once set" in rules
    # On the whole object: spec.clusterId may not name another cluster than status.clusterId.
    (root,) = _version()["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]
    assert "self.spec.clusterId == self.status.clusterId" in root["rule"]
    assert "oldSelf.spec.clusterId" in root["rule"]  # only when it is being set


def test_printer_columns() -> None:
    cols = {c["name"]: c["jsonPath"] for c in _version()["additionalPrinterColumns"]}
    assert cols == {
        "Cluster ID": ".status.clusterId",
        "State": ".status.state",
        "Operation": ".status.progress",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Suspended": ".spec.suspended",
        "Region": ".spec.regionId",
        "Age": ".metadata.creationTimestamp",
    }


def test_schema_is_structural_no_refs_no_nulls() -> None:
    text = COMMITTED.read_text()
    assert "$ref" not in text
    assert "anyOf" not in text
    assert "type: 'null'" not in text


def test_cli_crd_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    from akua_operator.cli import main

    assert main(["crd"]) == 0
    assert capsys.readouterr().out == COMMITTED.read_text()
