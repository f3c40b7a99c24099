"""Reading Secrets, emitting Events and patching the status of AkuaClusters (in threads); reading
the AkuaCluster CRD and recording clusters released by the CRD guard (a ConfigMap)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from akua_operator.akua.client import Credentials
from akua_operator.core.types import Event
from akua_operator.resource.models import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    CredentialsSpec,
)

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"

COMPONENT = "akua-operator"
MESSAGE_LIMIT = 1000


class CredentialsError(Exception):
    """The credentials cannot be read. The message names where from, never the token."""


class SecretNotFound(CredentialsError):
    """The credentials Secret does not exist (404), e.g. pruned before the AkuaCluster."""


class CRDUnreadable(Exception):
    """Reading the AkuaCluster CRD was refused (403) or found nothing (404)."""

    def __init__(self, name: str, status: int) -> None:
        super().__init__(f"reading CustomResourceDefinition {name} failed: HTTP {status}")
        self.status = status


@dataclass(frozen=True)
class TokenSource:
    """The operator's own token: ``AKUA_TOKEN`` or the file named by ``AKUA_TOKEN_FILE``.

    The file is read on every use, so a rotated Secret mounted as a file is picked up.
    """

    token: SecretStr | None = None
    token_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TokenSource:
        env = os.environ if env is None else env
        token = env.get("AKUA_TOKEN") or None
        path = env.get("AKUA_TOKEN_FILE") or None
        return cls(
            token=SecretStr(token) if token else None,
            token_file=Path(path) if path else None,
        )

    def read(self) -> SecretStr:
        if self.token_file is not None:
            try:
                text = self.token_file.read_text().strip()
            except OSError as exc:
                raise CredentialsError(
                    f"cannot read AKUA_TOKEN_FILE {self.token_file}: {exc.strerror}"
                ) from None
            if not text:
                raise CredentialsError(f"AKUA_TOKEN_FILE {self.token_file} is empty")
            return SecretStr(text)
        if self.token is not None:
            return self.token
        raise CredentialsError(
            "no credentials: set spec.credentials.secretRef, or give the operator "
            "AKUA_TOKEN or AKUA_TOKEN_FILE"
        )


class KubeIO:
    """The operator's Kubernetes calls; sync ``*_sync`` methods and async wrappers."""

    def __init__(self, api_client: Any, *, instance: str | None = None) -> None:
        # Every call is a raw request through ``api_client`` (``_raw``): the typed API classes
        # of the ``kubernetes`` package import hundreds of pydantic models (CoreV1Api alone
        # added about 95 MiB to the process) and build and validate models both ways.
        self.api_client = api_client
        self.instance = instance or os.environ.get("POD_ID") or socket.gethostname()

    # --- credentials ------------------------------------------------------------------------

    def read_secret_key_sync(self, namespace: str, name: str, key: str) -> SecretStr:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self._raw(
                "GET",
                "/api/v1/namespaces/{namespace}/secrets/{name}",
                {"namespace": namespace, "name": name},
            )
        except ApiException as exc:
            if exc.status == 404:
                raise SecretNotFound(f"Secret {namespace}/{name} not found") from None
            if exc.status == 403:
                raise CredentialsError(
                    f"the operator may not read Secret {namespace}/{name} (403)"
                ) from None
            raise CredentialsError(
                f"reading Secret {namespace}/{name} failed: HTTP {exc.status}"
            ) from None
        data = secret.get("data") or {}
        if key not in data:
            raise CredentialsError(f"Secret {namespace}/{name} has no key {key!r}")
        try:
            text = base64.b64decode(data[key]).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialsError(f"Secret {namespace}/{name} key {key!r} is not text") from None
        if not text:
            raise CredentialsError(f"Secret {namespace}/{name} key {key!r} is empty")
        return SecretStr(text)

    async def credentials(
        self, namespace: str, spec: CredentialsSpec | None, default: TokenSource
    ) -> Credentials:
        """The Akua credentials for a resource, read now (every attempt: rotation works)."""
        context = spec.workspace_id if spec is not None else None
        if spec is not None and spec.secret_ref is not None:
            ref = spec.secret_ref
            token = await asyncio.to_thread(self.read_secret_key_sync, namespace, ref.name, ref.key)
        else:
            token = await asyncio.to_thread(default.read)  # a file read: off the event loop
        return Credentials(token=token, context=context)

    # --- status -----------------------------------------------------------------------------

    def patch_status_sync(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        return self._raw(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}/status",
            {"namespace": namespace, "name": name},
            {"status": patch},
            content_type=MERGE_PATCH,
        )

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> Any:
        """JSON-merge-patch ``status`` (the status subresource); returns the new object."""
        return await asyncio.to_thread(self.patch_status_sync, namespace, name, patch)

    def get_akuacluster_sync(self, namespace: str, name: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return self._raw(
                "GET",
                f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}",
                {"namespace": namespace, "name": name},
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    async def get_akuacluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The AkuaCluster as the API server has it now (None: it does not exist)."""
        found = await asyncio.to_thread(self.get_akuacluster_sync, namespace, name)
        return dict(found) if isinstance(found, dict) else None

    # --- the AkuaCluster CRD and the released-clusters record ----------------------------------

    def crd_deleting_sync(self, name: str) -> bool:
        """Whether the CRD ``name`` has a deletionTimestamp (apiextensions.k8s.io/v1 GET).

        Raises :class:`CRDUnreadable` on 403/404, the client's ApiException on other failures.
        """
        from kubernetes.client.exceptions import ApiException

        try:
            crd = self._raw(
                "GET",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                {"name": name},
            )
        except ApiException as exc:
            if exc.status in (403, 404):
                raise CRDUnreadable(name, exc.status) from None
            raise
        return bool((crd.get("metadata") or {}).get("deletionTimestamp"))

    async def crd_deleting(self, name: str) -> bool:
        return await asyncio.to_thread(self.crd_deleting_sync, name)

    def record_released_sync(self, namespace: str, name: str, key: str, value: str) -> None:
        """Set ``data[key] = value`` in the ConfigMap ``namespace/name``: merge patch, or create
        it when missing (and patch again if another writer created it meanwhile)."""
        from kubernetes.client.exceptions import ApiException

        patch = {"data": {key: value}}
        path = "/api/v1/namespaces/{namespace}/configmaps/{name}"
        where = {"namespace": namespace, "name": name}
        try:
            self._raw("PATCH", path, where, patch, content_type=MERGE_PATCH, parse=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
        else:
            return
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/managed-by": COMPONENT,
                    "akua.dev/record": "released-clusters",
                },
                "annotations": {
                    "akua.dev/description": (
                        "Akua clusters the operator released WITHOUT deleting because the "
                        "AkuaCluster CRD was being deleted; they may still exist (billed)."
                    )
                },
            },
            "data": {key: value},
        }
        try:
            self._raw(
                "POST",
                "/api/v1/namespaces/{namespace}/configmaps",
                {"namespace": namespace},
                body,
                parse=False,
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            self._raw("PATCH", path, where, patch, content_type=MERGE_PATCH, parse=False)

    async def record_released(self, namespace: str, name: str, key: str, value: str) -> None:
        await asyncio.to_thread(self.record_released_sync, namespace, name, key, value)

    # --- namespaces (the default credentials' label selector) ---------------------------------

    def namespace_sync(self, namespace: str) -> dict[str, Any]:
        """The Namespace object (raises ``ApiException``)."""
        return self._raw("GET", "/api/v1/namespaces/{name}", {"name": namespace})

    def namespace_labels_sync(self, namespace: str) -> dict[str, str]:
        ns = self.namespace_sync(namespace)
        return dict((ns.get("metadata") or {}).get("labels") or {})

    async def namespace_labels(self, namespace: str) -> dict[str, str]:
        return await asyncio.to_thread(self.namespace_labels_sync, namespace)

    # --- raw requests -----------------------------------------------------------------------

    def _raw(
        self,
        method: str,
        path: str,
        path_params: dict[str, str],
        body: dict[str, Any] | None = None,
        *,
        parse: bool = True,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One request through the client's connection pool and credentials, without the typed
        API classes and their models (see ``__init__``): kubernetes 37 validates arguments and
        builds pydantic models of the answer both ways, which cost more CPU than the request
        for large objects. Raises ``ApiException`` on a non-2xx answer (with the API server's
        body, as the typed calls do)."""
        from kubernetes.client.exceptions import ApiException

        request = self.api_client.param_serialize(
            method=method,
            resource_path=path,
            path_params=path_params,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        answer = self.api_client.call_api(*request)
        answer.read()
        if not 200 <= answer.status <= 299:
            raise ApiException.from_response(http_resp=answer, body=None, data=None)
        if not parse:
            return {}
        data = json.loads(answer.data or b"{}")
        return data if isinstance(data, dict) else {}

    # --- events -----------------------------------------------------------------------------

    def emit_event_sync(self, ref: ObjectRef, event: Event) -> None:
        now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = event.message
        if len(message) > MESSAGE_LIMIT:
            message = message[: MESSAGE_LIMIT - 3] + "..."
        # A plain dict, and the answer left unparsed (no CoreV1Event models built or parsed):
        # Events were 8% of the operator's busy CPU samples in a N = 1000 wave (py-spy).
        body = {
            "metadata": {"generateName": f"{ref.name}."},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": ref.name,
                "namespace": ref.namespace,
                "uid": ref.uid,
            },
            "reason": event.reason,
            "message": message,
            "type": str(event.type),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": "akua.dev/operator",
            "reportingInstance": self.instance[:128],
            "action": "Reconcile",
        }
        self._raw(
            "POST",
            "/api/v1/namespaces/{namespace}/events",
            {"namespace": ref.namespace},
            body,
            parse=False,
        )

    async def emit_event(self, ref: ObjectRef, event: Event) -> None:
        """Create a core/v1 Event on the AkuaCluster. Failures are logged, never raised."""
        try:
            await asyncio.to_thread(self.emit_event_sync, ref, event)
        except Exception as exc:  # noqa: BLE001 - an Event is best effort
            if _namespace_terminating(exc):
                # The API server refuses new objects in a namespace being deleted; the
                # deletion goes on without its Events (the log keeps the story).
                log.debug(
                    "Event %s on %s/%s not recorded: the namespace is being deleted",
                    event.reason,
                    ref.namespace,
                    ref.name,
                )
                return
            log.warning(
                "could not emit Event %s on %s/%s: %s",
                event.reason,
                ref.namespace,
                ref.name,
                type(exc).__name__,
            )


def _namespace_terminating(exc: Exception) -> bool:
    """A 403 from the NamespaceLifecycle admission: "unable to create new content in namespace
    NS because it is being terminated" (not an RBAC denial)."""
    body = str(getattr(exc, "body", "") or "")
    return getattr(exc, "status", None) == 403 and "because it is being terminated" in body


@dataclass(frozen=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str
