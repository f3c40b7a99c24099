"""The Argo CD health check in Lua, on statuses the decision core writes (the e2e tests run it
on statuses the operator wrote to the API server: tests/e2e/test_lifecycle_e2e.py)."""

from __future__ import annotations

from typing import Any

from akc_factories import CID, cluster, facts, operation, step
from argocd_lua import argocd_health
from hypothesis import given, settings
from hypothesis import strategies as st

from akua_operator.core import Decision, advance, decide
from akua_operator.core.lifecycle import paused
from akua_operator.core.types import ClusterGone, ClusterObserved, OperationObserved

CREATE = {"name": "prod", "regionId": "reg_eu"}


def obj(d: Decision, generation: int = 1, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "akua.dev/v1alpha1",
        "kind": "AkuaCluster",
        "metadata": {"name": "prod", "generation": generation, "annotations": annotations},
        "spec": {},
        "status": d.status.dump(),
    }


def test_no_status_is_progressing() -> None:
    health = argocd_health({"metadata": {"name": "x", "generation": 1}, "spec": {}})
    assert health["status"] == "Progressing"
    # What a new object reads back as (the CRD's status default) before the operator writes.
    fresh = {"metadata": {"generation": 1}, "spec": {}, "status": {"observedGeneration": 0}}
    assert argocd_health(fresh)["status"] == "Progressing"


def test_running_create_is_progressing_with_the_step() -> None:
    f = facts(deleting=False, spec=CREATE)
    d = decide(f)
    assert argocd_health(obj(d))["status"] == "Progressing"
    op = operation(
        "op_c",
        op_type="cluster.create",
        steps=[step("validate_request", "completed"), step("provision_network", "running")],
    )
    d = decide(advance(f, d), OperationObserved(op, accepted=True))
    health = argocd_health(obj(d))
    assert health == {
        "status": "Progressing",
        "message": "create 2/2 provision_network (Creating: create 2/2 provision_network "
        "(operation op_c))",
    }


def test_ready_is_healthy_and_an_older_generation_is_progressing() -> None:
    f = facts(deleting=False, generation=3)
    d = decide(advance(f, decide(f)), ClusterObserved(cluster()))
    assert argocd_health(obj(d, generation=3)) == {
        "status": "Healthy",
        "message": f"Active: Akua cluster {CID} is active",
    }
    assert argocd_health(obj(d, generation=4))["status"] == "Progressing"


def test_cluster_gone_is_degraded() -> None:
    f = facts(deleting=False)
    d = decide(advance(f, decide(f)), ClusterGone(CID))
    health = argocd_health(obj(d))
    assert health["status"] == "Degraded"
    assert health["message"].startswith("ClusterNotFound: Akua cluster clu_abc123 does not exist")


def test_paused_is_suspended() -> None:
    f = facts(deleting=False, annotations={"akua.dev/paused": "true"})
    d = decide(f)
    assert argocd_health(obj(d, **{"akua.dev/paused": "true"}))["status"] == "Suspended"


# Every character Python's str.strip() removes (what the operator trims), and a few others.
_WHITESPACE = [chr(c) for c in range(0x3001) if chr(c).isspace()]
_PAUSED_TEXT = st.text(
    alphabet=st.sampled_from([*_WHITESPACE, "t", "r", "u", "e", "T", "R", "U", "E", "x", "é"]),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(_PAUSED_TEXT, st.just(" True\n"), st.just("\u00a0TRUE\u3000")))
def test_paused_reads_the_annotation_as_the_operator_does(value: str) -> None:
    annotations = {"akua.dev/paused": value}
    f = facts(deleting=False, annotations=annotations)
    health = argocd_health(obj(decide(f), **annotations))
    assert (health["status"] == "Suspended") is paused(annotations)


def test_paused_with_whitespace_around_is_suspended() -> None:
    for value in (" true", "TRUE\n", "\ttrue\u00a0", "\u2003True\u3000"):
        annotations = {"akua.dev/paused": value}
        assert paused(annotations), value
        assert argocd_health(obj(decide(facts(deleting=False)), **annotations))["status"] == (
            "Suspended"
        ), value
    for value in ("false", "", "tru e", "yes"):
        assert (
            argocd_health(obj(decide(facts(deleting=False)), **{"akua.dev/paused": value}))[
                "status"
            ]
            != "Suspended"
        ), value
