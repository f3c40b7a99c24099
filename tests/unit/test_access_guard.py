"""The access guard of a namespaced install: its decision per object, and the order in which it
guards and releases (the RoleBinding first and last). The end-to-end proof, with a real namespace
controller, is tests/e2e/test_namespace_deletion.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from akua_operator.core.access import ACCESS_FINALIZER, AccessStep, access_step
from akua_operator.handlers.access import AccessGuard
from akua_operator.kube.access import AccessObject


@pytest.mark.parametrize(
    ("held", "guarded", "deleting", "terminating", "step"),
    [
        (True, False, False, None, AccessStep.ADD),  # AkuaClusters need the operator: guard
        (True, True, False, None, AccessStep.KEEP),
        (False, True, False, None, AccessStep.REMOVE),  # none left: release
        (False, False, False, None, AccessStep.KEEP),
        (True, True, True, True, AccessStep.KEEP),  # namespace deleted: hold until released
        (True, True, True, None, AccessStep.KEEP),  # unknown: hold, never lose access early
        (True, True, True, False, AccessStep.REMOVE),  # only the object deleted (uninstall)
        (False, True, True, True, AccessStep.REMOVE),  # the last AkuaCluster is gone
        (True, False, True, True, AccessStep.KEEP),  # too late to add a finalizer
    ],
)
def test_access_step(
    held: bool, guarded: bool, deleting: bool, terminating: bool | None, step: AccessStep
) -> None:
    assert (
        access_step(
            held=held, guarded=guarded, deleting=deleting, namespace_terminating=terminating
        )
        is step
    )


BINDING = AccessObject("RoleBinding", "op")
PEERING = AccessObject("KopfPeering", "op")


class FakeIO:
    """The API as the guard sees it: AkuaClusters held or not, and the access objects."""

    def __init__(self, held: bool, terminating: bool | None = True) -> None:
        self.held = held
        self.terminating = terminating
        self.objects: dict[AccessObject, dict[str, Any]] = {
            obj: {"resourceVersion": "1", "finalizers": []} for obj in (BINDING, PEERING)
        }
        self.writes: list[tuple[AccessObject, list[str]]] = []
        self.fail: set[AccessObject] = set()

    def held_sync(self, namespace: str) -> bool:
        return self.held

    def read_sync(self, namespace: str, obj: AccessObject) -> dict[str, Any] | None:
        return self.objects.get(obj)

    def set_finalizers_sync(
        self, namespace: str, obj: AccessObject, resource_version: str, finalizers: list[str]
    ) -> None:
        if obj in self.fail:
            raise RuntimeError("409")
        self.writes.append((obj, finalizers))
        self.objects[obj]["finalizers"] = finalizers

    def namespace_terminating_sync(self, namespace: str) -> bool | None:
        return self.terminating


def reconcile(guard: AccessGuard, io: FakeIO) -> None:
    asyncio.run(guard.reconcile(io, "x"))  # type: ignore[arg-type]


def test_guards_the_rolebinding_first_and_releases_it_last() -> None:
    guard = AccessGuard(("x",), (BINDING, PEERING))
    io = FakeIO(held=True)
    reconcile(guard, io)
    assert io.writes == [(BINDING, [ACCESS_FINALIZER]), (PEERING, [ACCESS_FINALIZER])]

    # The namespace is deleted: both objects are marked, the guard holds them.
    io.writes.clear()
    for meta in io.objects.values():
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    reconcile(guard, io)
    assert io.writes == []

    # The last AkuaCluster is released: the peering first, the binding (all access) last.
    io.held = False
    reconcile(guard, io)
    assert io.writes == [(PEERING, []), (BINDING, [])]


def test_never_releases_the_rolebinding_while_another_object_is_still_guarded() -> None:
    guard = AccessGuard(("x",), (BINDING, PEERING))
    io = FakeIO(held=True)
    reconcile(guard, io)
    io.held = False
    io.writes.clear()
    io.fail = {PEERING}
    reconcile(guard, io)
    assert io.writes == []  # the binding stays guarded: without it the peering could not be freed
    io.fail = set()
    reconcile(guard, io)
    assert io.writes == [(PEERING, []), (BINDING, [])]


def test_an_uninstall_removes_the_finalizer_at_once() -> None:
    """helm uninstall deletes the RoleBinding while AkuaClusters remain and the namespace stays:
    the guard is for namespace deletion only, it does not hold the uninstall."""
    guard = AccessGuard(("x",), (BINDING, PEERING))
    io = FakeIO(held=True, terminating=False)
    reconcile(guard, io)
    io.writes.clear()
    io.objects[BINDING]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    reconcile(guard, io)
    assert io.writes == [(BINDING, [])]
