"""The chart's multi-team objects (issue 13; docs/security.md): rendered, and accepted by the real
API server (server-side dry-run). The NetworkPolicy cannot be enforced here (no network plugin):
it is checked by rendering and server-side validation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from test_chart import by_kind, container, helm_template


@pytest.fixture(scope="module")
def offline_env(testbin: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for helm commands that need no cluster."""
    home = tmp_path_factory.mktemp("helm-offline")
    env = dict(os.environ)
    env.update(
        HELM_CACHE_HOME=str(home / "cache"),
        HELM_CONFIG_HOME=str(home / "config"),
        HELM_DATA_HOME=str(home / "data"),
        KUBECONFIG=str(home / "no-kubeconfig"),
    )
    return env


NP_SETS = (
    "networkPolicy.enabled=true",
    "networkPolicy.apiServerCIDRs={10.96.0.1/32,192.168.1.10/32}",
    "networkPolicy.akuaApiCIDRs={203.0.113.0/24}",
)


def test_default_install_security_objects(testbin: Path, offline_env: dict[str, str]) -> None:
    docs = helm_template(testbin, offline_env, "defaultCredentials.namespaces={team-a,team-b}")
    assert "--default-credentials-namespaces=team-a,team-b" in container(docs)["args"]
    # On by default: deletion protection and the roles for users; off: the rest.
    (vap,) = by_kind(docs, "ValidatingAdmissionPolicy")
    assert vap["metadata"]["name"] == "rel-akua-operator-deletion-protection"
    (binding,) = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"] == {"policyName": vap["metadata"]["name"], "validationActions": ["Deny"]}
    assert not by_kind(docs, "NetworkPolicy")
    roles = {r["metadata"]["name"]: r for r in by_kind(docs, "ClusterRole")}
    labels = {n: set(r["metadata"]["labels"]) for n, r in roles.items()}
    assert "rbac.authorization.k8s.io/aggregate-to-view" in labels["rel-akua-operator-view"]
    assert {
        "rbac.authorization.k8s.io/aggregate-to-edit",
        "rbac.authorization.k8s.io/aggregate-to-admin",
    } <= labels["rel-akua-operator-edit"]
    for name in ("rel-akua-operator-view", "rel-akua-operator-edit"):
        for rule in roles[name]["rules"]:
            assert rule["resources"] == ["akuaclusters"], rule  # never akuaclusters/status
    off = helm_template(
        testbin,
        offline_env,
        "rbac.aggregateToDefaultRoles=false",
        "admissionPolicies.deletionProtection.enabled=false",
    )
    assert {r["metadata"]["name"] for r in by_kind(off, "ClusterRole")} == {"rel-akua-operator"}
    assert not by_kind(off, "ValidatingAdmissionPolicy")


def test_network_policy_allows_only_the_listed_traffic(
    testbin: Path, offline_env: dict[str, str]
) -> None:
    docs = helm_template(testbin, offline_env, *NP_SETS, "metrics.port=9090")
    (np,) = by_kind(docs, "NetworkPolicy")
    spec = np["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    pod_labels = by_kind(docs, "Deployment")[0]["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    (ingress,) = spec["ingress"]
    assert "from" not in ingress  # metricsFrom empty: anyone (the kubelet's probes)
    assert {p["port"] for p in ingress["ports"]} == {9090, 8081}
    dns, api, akua = spec["egress"]
    assert "to" not in dns and {(p["protocol"], p["port"]) for p in dns["ports"]} == {
        ("UDP", 53),
        ("TCP", 53),
    }
    assert [t["ipBlock"]["cidr"] for t in api["to"]] == ["10.96.0.1/32", "192.168.1.10/32"]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert [t["ipBlock"]["cidr"] for t in akua["to"]] == ["203.0.113.0/24"]
    assert {p["port"] for p in akua["ports"]} == {443}


def test_security_objects_pass_server_side_validation(
    testbin: Path, offline_env: dict[str, str], kubectl: Any, namespace: str
) -> None:
    docs = helm_template(
        testbin,
        offline_env,
        *NP_SETS,
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring",
        "admissionPolicies.guardedChanges.enabled=true",
        "admissionPolicies.guardedChanges.group=akua-admins",
        namespace=namespace,
    )
    kinds = {"NetworkPolicy", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
    chosen = [d for d in docs if d["kind"] in kinds]
    assert len(chosen) == 5
    items = {"apiVersion": "v1", "kind": "List", "items": chosen}
    out = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(items))
    accepted = json.loads(out.stdout)["items"]
    assert sorted(d["kind"] for d in accepted) == sorted(d["kind"] for d in chosen)
    (np,) = [d for d in accepted if d["kind"] == "NetworkPolicy"]
    assert np["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}
    ]
