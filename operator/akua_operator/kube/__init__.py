"""Kubernetes I/O for the operator: credentials, Events, status patches.

The kubernetes client is synchronous: every function here that talks to the API server is a
plain function, and :class:`KubeIO` runs them in threads (``asyncio.to_thread``) so kopf's
event loop is never blocked.
"""

from akua_operator.kube.io import (
    CRDUnreadable,
    CredentialsError,
    KubeIO,
    ObjectRef,
    SecretNotFound,
    TokenSource,
)

__all__ = [
    "CRDUnreadable",
    "CredentialsError",
    "KubeIO",
    "ObjectRef",
    "SecretNotFound",
    "TokenSource",
]
