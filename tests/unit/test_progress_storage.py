"""kopf's progress record on an AkuaCluster (handlers/akuacluster.py: ProgressStorage): the same
annotations as kopf's own storage, without the clean-up writes that only precede the removal of
the finalizer. Driven the way kopf drives it: store the handler's record, then purge it."""

from __future__ import annotations

import json
from typing import Any

import kopf

from akua_operator.handlers.akuacluster import STORAGE_PREFIX, ProgressStorage

RECORD = "operator.akua.dev/delete"
MARKER = "operator.akua.dev/kopf-managed"
TOUCH = "operator.akua.dev/touch-dummy"


def body(annotations: dict[str, str], *, deleting: bool) -> kopf.Body:
    meta: dict[str, Any] = {"name": "prod", "namespace": "ns", "annotations": annotations}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    return kopf.Body({"metadata": meta})


def finish(storage: ProgressStorage, obj: kopf.Body) -> kopf.Patch:
    """What kopf puts in the patch when the delete handler succeeded: the final record, the
    purge, and (before applying a non-empty patch) the clean-up of its touch-dummy."""
    patch = kopf.Patch()
    record: Any = {"started": "2026-11-29T00:00:00", "success": True, "retries": 3}
    storage.store(key=kopf.HandlerId("delete"), record=record, body=obj, patch=patch)
    storage.purge(key=kopf.HandlerId("delete"), body=obj, patch=patch)
    if patch:
        storage.touch(body=obj, patch=patch, value=None)
    return patch


def earlier_record() -> str:
    return json.dumps({"started": "2026-11-29T00:00:00", "retries": 2})


def test_a_released_deletion_leaves_the_annotations_to_go_with_the_object() -> None:
    storage = ProgressStorage(prefix=STORAGE_PREFIX)
    obj = body({RECORD: earlier_record(), MARKER: "yes", TOUCH: "x"}, deleting=True)
    assert dict(finish(storage, obj)) == {}  # no merge PATCH before the finalizer's removal


def test_outside_a_deletion_the_record_and_the_touch_dummy_are_cleaned_up_as_kopf_does() -> None:
    storage = ProgressStorage(prefix=STORAGE_PREFIX)
    obj = body({RECORD: earlier_record(), MARKER: "yes", TOUCH: "x"}, deleting=False)
    stock = kopf.AnnotationsProgressStorage(prefix=STORAGE_PREFIX)
    patch = finish(storage, obj)
    assert patch["metadata"]["annotations"] == {RECORD: None, TOUCH: None}
    assert patch == finish(stock, obj)


def test_a_record_not_stored_in_this_patch_is_purged_as_kopf_does() -> None:
    # kopf purges the records of superseded handlers (another cause) before running the delete
    # handler: those are removed for real, or kopf would report them on every run.
    storage = ProgressStorage(prefix=STORAGE_PREFIX)
    obj = body({"operator.akua.dev/observe-update": earlier_record()}, deleting=True)
    patch = kopf.Patch()
    storage.purge(key=kopf.HandlerId("observe-update"), body=obj, patch=patch)
    assert patch["metadata"]["annotations"] == {"operator.akua.dev/observe-update": None}


def test_a_deletion_that_comes_back_still_stores_its_record_and_touches() -> None:
    storage = ProgressStorage(prefix=STORAGE_PREFIX)
    obj = body({MARKER: "yes"}, deleting=True)
    patch = kopf.Patch()
    record: Any = {"started": "2026-11-29T00:00:00", "retries": 1, "delayed": "x"}
    storage.store(key=kopf.HandlerId("delete"), record=record, body=obj, patch=patch)
    assert RECORD in patch["metadata"]["annotations"]
    touch = kopf.Patch()
    storage.touch(body=obj, patch=touch, value="2026-11-29T00:00:10")
    assert touch["metadata"]["annotations"][TOUCH] == "2026-11-29T00:00:10"
