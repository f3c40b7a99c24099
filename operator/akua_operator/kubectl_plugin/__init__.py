"""``kubectl akua``: a kubectl plugin that tells what an AkuaCluster waits for and acts on it.

It renders what the operator's core writes (``status.waitingFor``, the conditions, the mirrored
operation, Events) with the operator's own models (``resource/models.py``); it holds no copy of
the core's reasoning. It talks to Kubernetes with the ``kubernetes`` client (kubeconfig and
current context, like kubectl).
"""
