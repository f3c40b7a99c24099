"""Many teams, one operator (issue 13), in the decision core: a namespace that may not use the
default credentials, and a cluster claimed by another resource, are refused before any Akua
call; deleting a refused resource never calls Akua."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from akc_factories import CID, facts

from akua_operator.core import decide
from akua_operator.core.lifecycle_actions import LIFECYCLE_ACTIONS
from akua_operator.core.tenancy import (
    CAUSE_CLAIMED,
    CAUSE_NOT_PERMITTED,
    REASON_CLAIMED,
    REASON_NOT_PERMITTED,
    CredentialsScope,
    parse_selector,
)
from akua_operator.core.types import API_ACTIONS, Idle, Release

SECRET = {"credentials": {"secretRef": {"name": "team-b-token"}}}


def _stalled(status: Any) -> tuple[str, str]:
    for cond in status.conditions:
        if cond.type == "Stalled" and cond.status == "True":
            return cond.reason, cond.message
    raise AssertionError(f"not stalled: {status.conditions}")


def _no_call(action: object) -> None:
    assert not isinstance(action, API_ACTIONS + LIFECYCLE_ACTIONS), action


@pytest.mark.parametrize(
    "spec",
    [{"clusterId": CID}, {"create": {"name": "c1", "regionId": "r1", "provider": "managed_kaas"}}],
    ids=["adopt", "create"],
)
def test_not_permitted_default_credentials_stall_before_any_call(spec: dict[str, Any]) -> None:
    f = replace(facts(spec=spec, deleting=False), default_credentials_permitted=False)
    d = decide(f)
    _no_call(d.action)
    assert isinstance(d.action, Idle)
    reason, message = _stalled(d.status)
    assert reason == REASON_NOT_PERMITTED
    assert "spec.credentials.secretRef" in message and "namespace ns" in message
    assert [e.reason for e in d.events] == [REASON_NOT_PERMITTED]
    # the next cycle says nothing new (one Warning Event)
    again = decide(replace(f, status=d.status))
    assert again.events == () and again.status_patch is None


def test_a_named_secret_is_never_refused() -> None:
    f = replace(
        facts(spec={"clusterId": CID, **SECRET}, deleting=False),
        default_credentials_permitted=False,
    )
    assert not isinstance(decide(f).action, Idle)


def test_permitted_namespace_acts() -> None:
    d = decide(facts(deleting=False))
    assert isinstance(d.action, API_ACTIONS)


def test_deleting_a_resource_that_never_acted_releases_without_a_call() -> None:
    f = replace(facts(deleting=True), default_credentials_permitted=False)
    d = decide(f)
    assert isinstance(d.action, Release) and d.action.cause == CAUSE_NOT_PERMITTED


def test_upgrade_a_resource_that_acted_under_the_default_keeps_it_for_its_deletion() -> None:
    status = {"clusterId": CID, "workspaceId": "ws_1", "credentialsIdentity": "operator default"}
    deleting = replace(facts(status=status, deleting=True), default_credentials_permitted=False)
    d = decide(deleting)
    assert isinstance(d.action, API_ACTIONS), d.action  # it goes on to delete its cluster
    # ... but only for its deletion: alive, it stalls
    living = replace(deleting, meta=replace(deleting.meta, deleting=False))
    d = decide(living)
    assert isinstance(d.action, Idle)
    assert _stalled(d.status)[0] == REASON_NOT_PERMITTED


def test_claimed_elsewhere_stalls_naming_the_owner() -> None:
    f = replace(facts(deleting=False), claimed_by="team-a/prod")
    d = decide(f)
    _no_call(d.action)
    reason, message = _stalled(d.status)
    assert reason == REASON_CLAIMED
    assert "team-a/prod" in message and CID in message


def test_deleting_a_refused_claimant_never_deletes_the_cluster() -> None:
    status = {"clusterId": CID, "workspaceId": "ws_1"}
    f = replace(facts(status=status, deleting=True), claimed_by="team-a/prod")
    d = decide(f)
    assert isinstance(d.action, Release) and d.action.cause == CAUSE_CLAIMED


def test_orphan_annotation_still_comes_first() -> None:
    f = replace(
        facts(deleting=True, annotations={"akua.dev/orphan": "true"}),
        default_credentials_permitted=False,
        claimed_by="team-a/prod",
    )
    d = decide(f)
    assert isinstance(d.action, Release) and d.action.cause == "orphan"


def test_scope_lists_star_and_selector() -> None:
    scope = CredentialsScope(frozenset({"team-a"}), parse_selector("tier=shared,!blocked"))
    assert scope.permits("team-a", None)
    assert not scope.permits("team-b", None)  # labels not read
    assert scope.permits("team-b", {"tier": "shared"})
    assert not scope.permits("team-b", {"tier": "shared", "blocked": ""})
    assert not scope.permits("team-b", {"tier": "private"})
    assert CredentialsScope(frozenset({"*"})).permits("anything", None)
    assert not CredentialsScope().permits("team-a", {"tier": "shared"})
    assert parse_selector("a!=b")[0].matches({})
    with pytest.raises(ValueError, match="not an equality-based"):
        parse_selector("tier in (a,b)")
