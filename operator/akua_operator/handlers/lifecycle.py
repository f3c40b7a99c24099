"""Performing the lifecycle actions of the core (create, import, rename, suspend, resume).

:meth:`akua_operator.handlers.runtime.Runtime.perform` hands every action of
:mod:`akua_operator.core.lifecycle_actions` to :func:`perform_lifecycle`. One Akua call each;
typed Akua errors propagate (the runtime turns them into ``ApiFailed`` observations).

The kubeconfig of an import is read from its Secret in a thread, put into the request body as a
``SecretStr`` and nowhere else: not in status, Events, logs or exception messages.
"""

from __future__ import annotations

import asyncio

from akua_operator.akua.client import AkuaClient, Credentials
from akua_operator.akua.models import (
    CreateClusterRequest,
    ImportClusterRequest,
    NetworkProfile,
    UpdateClusterRequest,
)
from akua_operator.core.lifecycle_actions import (
    ClusterAnswered,
    CreateCluster,
    ImportCluster,
    KubeconfigUnavailable,
    LifecycleAction,
    LifecycleObservation,
    RenameCluster,
    ResumeCluster,
    SuspendCluster,
)
from akua_operator.core.types import OperationObserved
from akua_operator.kube import CredentialsError, KubeIO


async def perform_lifecycle(
    client: AkuaClient, kube: KubeIO, action: LifecycleAction, creds: Credentials
) -> LifecycleObservation | OperationObserved:
    """One Akua call for ``action``; AkuaError propagates to the caller."""
    match action:
        case CreateCluster(name=name, region_id=region, network_profile=profile, idempotency_key=k):
            body = CreateClusterRequest(
                name=name,
                region_id=region,
                network_profile=NetworkProfile(profile) if profile else None,
            )
            op = await client.create_cluster(body, creds=creds, idempotency_key=k)
            return OperationObserved(op, accepted=True)
        case ImportCluster(
            name=name, region_id=region, namespace=ns, kubeconfig=ref, idempotency_key=k
        ):
            try:
                kubeconfig = await asyncio.to_thread(
                    kube.read_secret_key_sync, ns, ref.name, ref.key
                )
            except CredentialsError as exc:
                return KubeconfigUnavailable(str(exc))
            body_import = ImportClusterRequest(name=name, region_id=region, kubeconfig=kubeconfig)
            cluster = await client.import_cluster(body_import, creds=creds, idempotency_key=k)
            return ClusterAnswered(cluster, "import")
        case RenameCluster(cluster_id=cid, name=name, if_match=etag, idempotency_key=k):
            cluster = await client.update_cluster(
                cid,
                UpdateClusterRequest(name=name),
                creds=creds,
                if_match=etag,
                idempotency_key=k,
            )
            return ClusterAnswered(cluster, "rename")
        case SuspendCluster(cluster_id=cid, if_match=etag, idempotency_key=k):
            op = await client.suspend_cluster(cid, creds=creds, if_match=etag, idempotency_key=k)
            return OperationObserved(op, accepted=True)
        case ResumeCluster(cluster_id=cid, if_match=etag, idempotency_key=k):
            op = await client.resume_cluster(cid, creds=creds, if_match=etag, idempotency_key=k)
            return OperationObserved(op, accepted=True)
    raise AssertionError(f"not a lifecycle action: {action!r}")  # pragma: no cover
