"""kube/io.py against the real kube-apiserver: Secrets, status merge patches, Events.

Everything the operator reads or writes in Kubernetes goes through ``KubeIO``; these tests call
it as the runtime does, against the real API server of tests/conftest.py (the committed CRD,
RBAC on), and check what a user would then find with kubectl.
"""

from __future__ import annotations

import base64
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from pydantic import SecretStr

from akua_operator.core.types import Event, EventType
from akua_operator.kube import (
    CRDUnreadable,
    CredentialsError,
    KubeIO,
    ObjectRef,
    SecretNotFound,
    TokenSource,
)
from akua_operator.kube.io import MESSAGE_LIMIT
from akua_operator.resource.models import CredentialsSpec

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts" / "akua-operator" / "files" / "crds" / "akuaclusters.akua.dev.yaml"
TOKEN = "sk_akua_integration_0123456789abcdef"


@pytest.fixture(scope="module")
def crd(kubectl: Any) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/akuaclusters.akua.dev", "--timeout=60s")


@pytest.fixture
def io(kube_client: Any) -> KubeIO:
    return KubeIO(kube_client, instance="akua-operator-test-0")


@pytest.fixture
def nobody_io(kubeconfig: Path) -> Iterator[KubeIO]:
    """KubeIO as a user without any RBAC rights (the admin impersonates it)."""
    api = k8s_config.new_client_from_config(config_file=str(kubeconfig))
    api.set_default_header("Impersonate-User", "akua-test-nobody")
    try:
        yield KubeIO(api, instance="nobody")
    finally:
        api.close()


def secret(kubectl: Any, namespace: str, name: str, data: dict[str, bytes]) -> None:
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
    )


def all_text(exc: BaseException) -> str:
    """Everything an exception could show: its text, repr, and the formatted traceback with
    its chained causes (what a logger.exception would print)."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


# --- Secrets ----------------------------------------------------------------------------------


async def test_a_secret_key_is_read_as_a_secret_str(
    io: KubeIO, kubectl: Any, namespace: str
) -> None:
    secret(kubectl, namespace, "akua", {"token": f"  {TOKEN}\n".encode()})
    token = io.read_secret_key_sync(namespace, "akua", "token")
    assert isinstance(token, SecretStr)
    assert token.get_secret_value() == TOKEN  # whitespace around it is dropped
    assert TOKEN not in repr(token) and TOKEN not in str(token)
    spec = CredentialsSpec.model_validate(
        {"secretRef": {"name": "akua", "key": "token"}, "workspaceId": "ws_9"}
    )
    creds = await io.credentials(namespace, spec, TokenSource())
    assert creds.token.get_secret_value() == TOKEN
    assert creds.context == "ws_9"


async def test_without_a_secret_ref_the_operator_token_is_used(io: KubeIO, namespace: str) -> None:
    creds = await io.credentials(namespace, None, TokenSource(token=SecretStr("sk_akua_default")))
    assert creds.token.get_secret_value() == "sk_akua_default"
    with pytest.raises(CredentialsError, match="no credentials"):
        await io.credentials(namespace, None, TokenSource())


def test_a_missing_secret_is_secret_not_found(io: KubeIO, namespace: str) -> None:
    with pytest.raises(SecretNotFound) as raised:
        io.read_secret_key_sync(namespace, "absent", "token")
    assert isinstance(raised.value, CredentialsError)
    assert str(raised.value) == f"Secret {namespace}/absent not found"


def test_a_missing_key_is_a_credentials_error_without_the_token(
    io: KubeIO, kubectl: Any, namespace: str
) -> None:
    secret(kubectl, namespace, "akua", {"tokn": TOKEN.encode()})
    with pytest.raises(CredentialsError) as raised:
        io.read_secret_key_sync(namespace, "akua", "token")
    assert not isinstance(raised.value, SecretNotFound)  # the Secret exists
    assert str(raised.value) == f"Secret {namespace}/akua has no key 'token'"
    assert TOKEN not in all_text(raised.value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(b"", "is empty"), (b" \n\t ", "is empty"), (b"\xff\xfe" + TOKEN.encode(), "is not text")],
    ids=["empty", "blank", "binary"],
)
def test_an_unusable_value_is_a_credentials_error_without_the_token(
    io: KubeIO, kubectl: Any, namespace: str, value: bytes, problem: str
) -> None:
    secret(kubectl, namespace, "akua", {"token": value})
    with pytest.raises(CredentialsError) as raised:
        io.read_secret_key_sync(namespace, "akua", "token")
    assert str(raised.value) == f"Secret {namespace}/akua key 'token' {problem}"
    assert TOKEN not in all_text(raised.value)


def test_a_forbidden_secret_is_a_credentials_error_naming_the_403(
    nobody_io: KubeIO, kubectl: Any, namespace: str
) -> None:
    secret(kubectl, namespace, "akua", {"token": TOKEN.encode()})
    with pytest.raises(CredentialsError) as raised:
        nobody_io.read_secret_key_sync(namespace, "akua", "token")
    assert not isinstance(raised.value, SecretNotFound)
    assert str(raised.value) == f"the operator may not read Secret {namespace}/akua (403)"
    assert TOKEN not in all_text(raised.value)


def test_no_api_server_response_reaches_the_exception(
    io: KubeIO, kubectl: Any, namespace: str
) -> None:
    # The ApiException (with the server's response body and headers) is not chained: a
    # logger.exception of the CredentialsError prints only our message.
    with pytest.raises(SecretNotFound) as raised:
        io.read_secret_key_sync(namespace, "absent", "token")
    assert raised.value.__cause__ is None
    assert raised.value.__suppress_context__
    assert "ApiException" not in "".join(traceback.format_exception(raised.value))


# --- status -------------------------------------------------------------------------------------


def akuacluster(kubectl: Any, namespace: str, name: str = "prod") -> dict[str, Any]:
    kubectl.apply(
        {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterId": "clu_abc123"},
        }
    )
    obj: dict[str, Any] = kubectl.json("get", "akuacluster", name, "-n", namespace)
    return obj


@pytest.mark.usefixtures("crd")
async def test_a_status_merge_patch_lands_and_undeclared_fields_are_pruned(
    io: KubeIO, kubectl: Any, namespace: str
) -> None:
    before = akuacluster(kubectl, namespace)
    patch = {
        "clusterId": "clu_abc123",
        "etag": "e1",
        "progress": "delete 1/4 drain_workloads",
        "deletion": {"attempt": 1, "requests": 1, "pending": True, "idempotencyKey": "k-1-1"},
        "notInTheSchema": "pruned",
    }
    returned = await io.patch_status(namespace, "prod", patch)
    got = kubectl.json("get", "akuacluster", "prod", "-n", namespace)
    for obj in (returned, got):
        status = obj["status"]
        assert status["etag"] == "e1"
        assert status["progress"] == "delete 1/4 drain_workloads"
        assert status["deletion"]["pending"] is True
        assert status["deletion"]["idempotencyKey"] == "k-1-1"
        assert "notInTheSchema" not in status
        assert obj["spec"] == before["spec"]  # the status subresource leaves spec alone
    assert int(got["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])

    # A merge patch: keys not named stay, null removes, nested objects merge.
    await io.patch_status(namespace, "prod", {"etag": "e2", "progress": None,
                                              "deletion": {"pending": False}})  # fmt: skip
    status = kubectl.json("get", "akuacluster", "prod", "-n", namespace)["status"]
    assert status["etag"] == "e2"
    assert "progress" not in status
    assert status["clusterId"] == "clu_abc123"
    assert status["deletion"] == {
        "attempt": 1,
        "requests": 1,
        "pending": False,
        "idempotencyKey": "k-1-1",
    }


@pytest.mark.usefixtures("crd")
async def test_a_status_patch_of_a_gone_resource_raises(io: KubeIO, namespace: str) -> None:
    with pytest.raises(k8s.ApiException) as raised:
        await io.patch_status(namespace, "absent", {"etag": "e1"})
    assert raised.value.status == 404


# --- Events -----------------------------------------------------------------------------------


def events_of(kubectl: Any, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json("get", "events", "-n", namespace)["items"]
    return items


@pytest.mark.usefixtures("crd")
async def test_an_event_is_created_on_the_akuacluster(
    io: KubeIO, kubectl: Any, namespace: str
) -> None:
    obj = akuacluster(kubectl, namespace)
    ref = ObjectRef(namespace, "prod", obj["metadata"]["uid"])
    await io.emit_event(ref, Event(EventType.WARNING, "DeleteFailed", "it failed (https://x)"))
    await io.emit_event(ref, Event(EventType.NORMAL, "Deleted", "gone"))
    events = sorted(events_of(kubectl, namespace), key=lambda e: e["reason"])
    assert [(e["reason"], e["type"]) for e in events] == [
        ("DeleteFailed", "Warning"),
        ("Deleted", "Normal"),
    ]
    for event in events:
        assert event["involvedObject"] == {
            "apiVersion": "akua.dev/v1alpha1",
            "kind": "AkuaCluster",
            "name": "prod",
            "namespace": namespace,
            "uid": obj["metadata"]["uid"],
        }
        assert event["metadata"]["name"].startswith("prod.")
        assert event["source"] == {"component": "akua-operator"}
        assert event["reportingComponent"] == "akua.dev/operator"
        assert event["reportingInstance"] == "akua-operator-test-0"
        assert event["count"] == 1
    assert events[0]["message"] == "it failed (https://x)"
    # kubectl describe finds them by the object (what a user does)
    described = kubectl("describe", "akuacluster", "prod", "-n", namespace).stdout
    assert "DeleteFailed" in described and "it failed (https://x)" in described


@pytest.mark.usefixtures("crd")
async def test_a_long_event_message_is_cut_to_the_limit(
    io: KubeIO, kubectl: Any, namespace: str
) -> None:
    obj = akuacluster(kubectl, namespace)
    ref = ObjectRef(namespace, "prod", obj["metadata"]["uid"])
    await io.emit_event(ref, Event(EventType.NORMAL, "OperationStep", "x" * 5000))
    (event,) = events_of(kubectl, namespace)
    assert len(event["message"]) == MESSAGE_LIMIT
    assert event["message"].endswith("...")


async def test_an_event_that_cannot_be_created_is_logged_not_raised(
    io: KubeIO, caplog: pytest.LogCaptureFixture
) -> None:
    # A namespace that does not exist: the API server refuses; the reconcile goes on.
    ref = ObjectRef("no-such-namespace-akua", "prod", "0000")
    with caplog.at_level(logging.WARNING, logger="akua_operator.kube.io"):
        await io.emit_event(ref, Event(EventType.NORMAL, "Deleted", f"token {TOKEN}"))
    (record,) = [r for r in caplog.records if r.name == "akua_operator.kube.io"]
    assert "could not emit Event Deleted" in record.getMessage()
    assert TOKEN not in record.getMessage()


async def test_an_event_in_a_terminating_namespace_is_refused_and_told_apart(
    io: KubeIO, kubectl: Any, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Events go out as raw requests (no CoreV1Event models): the refusal still carries the API
    # server's answer, so a namespace being deleted is told apart from an RBAC denial.
    kubectl("delete", "namespace", namespace, "--wait=false")
    ref = ObjectRef(namespace, "prod", "0000")
    with pytest.raises(k8s.ApiException) as raised:
        io.emit_event_sync(ref, Event(EventType.NORMAL, "Deleted", "gone"))
    assert raised.value.status == 403
    assert "because it is being terminated" in str(raised.value.body)
    with caplog.at_level(logging.DEBUG, logger="akua_operator.kube.io"):
        await io.emit_event(ref, Event(EventType.NORMAL, "Deleted", "gone"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("namespace is being deleted" in r.getMessage() for r in caplog.records)


def test_the_crd_read_tells_deleting_present_and_unreadable_apart(io: KubeIO, kubectl: Any) -> None:
    name = "widgets.crdread.akua.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        # a finalizer of the test's own keeps the deleted CRD visible while it is checked
        "metadata": {"name": name, "finalizers": ["crdread.akua.dev/hold"]},
        "spec": {
            "group": "crdread.akua.dev",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    kubectl.apply(crd)
    try:
        assert io.crd_deleting_sync(name) is False
        kubectl("delete", "crd", name, "--wait=false")
        assert io.crd_deleting_sync(name) is True
    finally:
        kubectl("patch", "crd", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
    with pytest.raises(CRDUnreadable) as raised:
        io.crd_deleting_sync("absent.crdread.akua.dev")
    assert raised.value.status == 404
