"""Kubernetes calls of the access guard (handlers/access.py): the RoleBinding and KopfPeering that
give a namespaced install its access to a watched namespace. Sync; run them in threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from akua_operator.core.shards import holds_operator_finalizer
from akua_operator.kube.io import KubeIO
from akua_operator.resource.models import GROUP, PLURAL, VERSION

JSON_PATCH = "application/json-patch+json"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"


@dataclass(frozen=True)
class AccessObject:
    kind: str  # RoleBinding | KopfPeering
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class AccessIO:
    def __init__(self, api_client: Any) -> None:
        from kubernetes import client as k8s

        self._api_client = api_client
        self._rbac = k8s.RbacAuthorizationV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._io = KubeIO(api_client)

    def held_sync(self, namespace: str) -> bool:
        """Some AkuaCluster in ``namespace`` carries the operator's finalizer."""
        # Metadata only: every few seconds, so not every status of every AkuaCluster.
        listed: Any = self._custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            _headers={"Accept": METADATA_LIST},
            _request_timeout=30,
        )
        return any(
            holds_operator_finalizer((item.get("metadata") or {}).get("finalizers") or [])
            for item in listed.get("items") or []
        )

    def read_sync(self, namespace: str, obj: AccessObject) -> dict[str, Any] | None:
        """The object's metadata, or None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            got: Any
            if obj.kind == "RoleBinding":
                got = self._rbac.read_namespaced_role_binding(obj.name, namespace)
            else:
                got = self._custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", obj.name
                )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body = got if isinstance(got, dict) else self._api_client.sanitize_for_serialization(got)
        meta: dict[str, Any] = body.get("metadata") or {}
        return meta

    def set_finalizers_sync(
        self, namespace: str, obj: AccessObject, resource_version: str, finalizers: list[str]
    ) -> None:
        """Replace the object's finalizers, only if it is unchanged since ``resource_version``
        (a JSON patch with a test: a concurrent change fails with 409/422, the next round
        decides again). Only finalizers change: RBAC allows it without the escalation check."""
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
        ]
        if obj.kind == "RoleBinding":
            self._rbac.patch_namespaced_role_binding(
                obj.name, namespace, patch, _content_type=JSON_PATCH
            )
        else:
            self._custom.patch_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", obj.name, patch,
                _content_type=JSON_PATCH,
            )  # fmt: skip

    def namespace_terminating_sync(self, namespace: str) -> bool | None:
        """The namespace is being deleted; None when it cannot be read."""
        from kubernetes.client.exceptions import ApiException

        try:
            ns = self._io.namespace_sync(namespace)
        except ApiException:
            return None
        meta = ns.get("metadata") or {}
        status = ns.get("status") or {}
        return bool(meta.get("deletionTimestamp") or status.get("phase") == "Terminating")
