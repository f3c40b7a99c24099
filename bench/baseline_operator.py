"""The framework's floor: a minimal kopf operator that only removes a finalizer on delete.

bench/run.py runs it against the same AkuaCluster objects as the real operator, so our costs
(CPU, memory, Kubernetes writes, release delay) can be reported as a ratio to what kopf itself
needs to hold a finalizer and let it go. It talks to no Akua API at all.

    python -m kopf run bench/baseline_operator.py --standalone --namespace NS
"""

from __future__ import annotations

from typing import Any

import kopf

FINALIZER = "akua.dev/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Same finalizer name as the real operator; everything else is kopf's default.
    settings.persistence.finalizer = FINALIZER


@kopf.on.delete("akua.dev", "v1alpha1", "akuaclusters")
def release(**_: Any) -> None:
    """Nothing to do: returning lets kopf remove the finalizer."""
