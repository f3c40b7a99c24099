"""The pure decision core of the operator.

No I/O here (import-linter forbids kopf, kubernetes, httpx, asyncio and the Akua client):
:func:`decide` takes :class:`~akua_operator.core.types.Facts` (spec, status, metadata, the
time) and the latest :data:`~akua_operator.core.types.Observation` (a cluster, a 404, an
operation, a typed API failure) and returns a :class:`~akua_operator.core.types.Decision`:
the next action, the status patch (only when something changed) and the Events to emit.

Modules:
- ``types``: facts, observations, actions, events, decision.
- ``status``: conditions (kstatus), the operation mirror, progress text, merge patches.
- ``failures``: one reaction to failed Akua calls (credentials, 429, 5xx, malformed).
- ``deletion``: the finalizer flow (``metadata.deletionTimestamp`` set).
- ``guards``: against mass deletion: the CRD guard and the deletion budget's waiting state.
- ``lifecycle``: the living resource (create, import, adopt, drift, suspend/resume, pause);
  ``lifecycle_actions``: its actions and observations.
"""

from akua_operator.core.decide import advance, decide
from akua_operator.core.types import Decision, Facts, Meta, Tuning

__all__ = ["Decision", "Facts", "Meta", "Tuning", "advance", "decide"]
