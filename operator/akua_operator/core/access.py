"""A namespaced install keeps its access to a watched namespace while its AkuaClusters need it.

Deleting a namespace deletes everything in it at once: the AkuaClusters (they wait on the
operator's finalizer) and, in a namespaced install, the RoleBinding that gives the operator its
rights there and the KopfPeering it coordinates through. Without the RoleBinding every read of a
Secret, status patch and finalizer patch in that namespace is refused (403) and the namespace
hangs in Terminating. So while AkuaClusters there carry the operator's finalizer, it keeps its own
finalizer (:data:`ACCESS_FINALIZER`) on those objects; the namespace controller then waits for them
too, and the operator releases them once the last AkuaCluster is released, the RoleBinding last
(after it the operator has no rights there at all). The role it binds is a ClusterRole, outside
the namespace: a Role in it could not be released once the binding was gone, nor the binding once
the Role was.

:func:`access_step` is the decision for one such object. The rule only holds for a namespace being
deleted: when the object alone is deleted (``helm uninstall``, a hand-made ``kubectl delete``) the
finalizer goes at once, as if it never was.
"""

from __future__ import annotations

from enum import StrEnum

ACCESS_FINALIZER = "akua.dev/operator-access"


class AccessStep(StrEnum):
    ADD = "add"  # put ACCESS_FINALIZER on the object
    REMOVE = "remove"  # take it off
    KEEP = "keep"  # nothing to change


def access_step(
    *, held: bool, guarded: bool, deleting: bool, namespace_terminating: bool | None
) -> AccessStep:
    """What to do with one access object (RoleBinding, KopfPeering) of a namespace.

    ``held``: some AkuaCluster in the namespace carries the operator's finalizer.
    ``guarded``: the object carries :data:`ACCESS_FINALIZER`. ``deleting``: it has a
    deletionTimestamp. ``namespace_terminating``: the namespace is being deleted; None when it
    could not be read (then the object is kept: never give up access while it may be needed).
    """
    if not guarded:
        # A finalizer cannot be added to an object being deleted; nothing to guard without
        # AkuaClusters that need the operator.
        return AccessStep.ADD if held and not deleting else AccessStep.KEEP
    if not held:
        return AccessStep.REMOVE
    if deleting and namespace_terminating is False:
        return AccessStep.REMOVE  # deleted on its own (uninstall), not with the namespace
    return AccessStep.KEEP
