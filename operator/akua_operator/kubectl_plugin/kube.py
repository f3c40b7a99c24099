"""The plugin's Kubernetes access: the ``kubernetes`` client, configured like kubectl.

Why the client and not a ``kubectl`` subprocess: it is already a dependency of the operator,
answers with structured objects and errors (an admission denial's own message, no parsing of
kubectl's text), and streams a watch for ``--watch``. It reads the same kubeconfig as kubectl
(``KUBECONFIG``, ``~/.kube/config``; ``--kubeconfig`` and ``--context`` as kubectl's), and the
context's namespace is the default namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from akua_operator.resource.models import GROUP, PLURAL, VERSION


class KubeError(Exception):
    """A refusal or failure from the API server, with its message for a person."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{reason} ({status}): {message}")


def _error(exc: Any) -> KubeError:
    import json

    status = int(getattr(exc, "status", 0) or 0)
    reason = str(getattr(exc, "reason", "") or "")
    message = str(exc)
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
            message = str(data.get("message") or message)
            reason = str(data.get("reason") or reason)
        except (ValueError, AttributeError):
            message = str(body)
    return KubeError(status, reason, message)


@dataclass
class Kube:
    api: Any  # kubernetes.client.ApiClient
    namespace: str

    @classmethod
    def connect(cls, kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
        from kubernetes import client, config

        try:
            config.load_kube_config(config_file=kubeconfig, context=context)  # type: ignore[no-untyped-call]
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
            chosen = active
            if context:
                contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
                chosen = next((c for c in contexts if c["name"] == context), active)
            default_ns = (chosen or {}).get("context", {}).get("namespace") or "default"
        except config.ConfigException:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            default_ns = "default"
        return cls(client.ApiClient(), namespace or default_ns)

    def _custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def get(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self._custom().get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _error(exc) from None
        return obj

    def list_all(self, all_namespaces: bool) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            if all_namespaces:
                found = self._custom().list_cluster_custom_object(GROUP, VERSION, PLURAL)
            else:
                found = self._custom().list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL
                )
        except ApiException as exc:
            raise _error(exc) from None
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    def annotate(self, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            obj: dict[str, Any] = self._custom().patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                name,
                {"metadata": {"annotations": annotations}},
            )
        except ApiException as exc:
            raise _error(exc) from None
        return obj

    def events(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """The Events about this object (this uid), oldest first."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        meta = obj.get("metadata", {})
        try:
            found = client.CoreV1Api(self.api).list_namespaced_event(
                meta.get("namespace", self.namespace),
                field_selector=f"involvedObject.uid={meta.get('uid', '')}",
            )
        except ApiException:
            return []  # Events are best effort (e.g. no right to list them)
        out: list[dict[str, Any]] = [self.api.sanitize_for_serialization(e) for e in found.items]
        return sorted(
            out,
            key=lambda e: (
                e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp") or ""
            ),
        )

    def watch(
        self, name: str, resource_version: str | None, timeout: int = 300
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(type, object) for each change of this one AkuaCluster after ``resource_version``
        (so a deletion between a read and the watch is not missed)."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        w = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in w.stream(  # type: ignore[no-untyped-call]
                self._custom().list_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                PLURAL,
                field_selector=f"metadata.name={name}",
                resource_version=resource_version,
                timeout_seconds=timeout,
            ):
                yield str(event["type"]), dict(event["object"])
        except ApiException as exc:
            raise _error(exc) from None
        finally:
            w.stop()  # type: ignore[no-untyped-call]
