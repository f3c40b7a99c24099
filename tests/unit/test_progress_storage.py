"""kopf's progress records on an AkuaCluster (handlers/akuacluster.py: progress_storage): in
``status.kopf`` (one ``/status`` PATCH with the status a run ends with), the annotations of
earlier versions read and purged, never written. Driven the way kopf drives it: store the
handler's record, purge it when the handler is done, touch the dummy for a delay."""

from __future__ import annotations

import json
from typing import Any

import kopf

from akua_operator.handlers.akuacluster import progress_storage

LEGACY = "operator.akua.dev/delete"
KEY = kopf.HandlerId("delete")
RECORD: Any = {"started": "2026-11-29T00:00:00", "retries": 1, "delayed": "2026-11-29T00:00:01"}


def body(*, status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None) -> Any:
    meta: dict[str, Any] = {"name": "prod", "namespace": "ns", "annotations": annotations or {}}
    meta["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    return kopf.Body({"metadata": meta, "status": status or {}})


def test_a_run_that_comes_back_stores_its_record_in_status_only() -> None:
    # Our status (handed to kopf by the run) and the record: one /status PATCH, no object PATCH.
    patch = kopf.Patch({"status": {"progress": "delete 2/4 delete_workers"}})
    progress_storage().store(key=KEY, record=RECORD, body=body(), patch=patch)
    assert "metadata" not in patch
    assert patch["status"]["kopf"]["progress"]["delete"] == RECORD
    assert patch["status"]["progress"] == "delete 2/4 delete_workers"


def test_the_record_is_read_back_from_status() -> None:
    obj = body(status={"kopf": {"progress": {"delete": RECORD}}})
    assert progress_storage().fetch(key=KEY, body=obj) == RECORD


def test_a_record_of_an_earlier_version_is_read_then_purged_not_written() -> None:
    obj = body(annotations={LEGACY: json.dumps(RECORD)})
    storage = progress_storage()
    assert storage.fetch(key=KEY, body=obj) == RECORD  # a run under way at the upgrade goes on
    patch = kopf.Patch()
    storage.store(key=KEY, record=RECORD, body=obj, patch=patch)
    assert "metadata" not in patch  # never written again
    storage.purge(key=KEY, body=obj, patch=patch)
    assert patch["metadata"]["annotations"] == {LEGACY: None}


def test_the_purge_at_the_release_rides_in_the_final_status_patch() -> None:
    obj = body(status={"kopf": {"progress": {"delete": RECORD}}})
    final = {"deletion": {"releasedAt": "2026-11-29T00:01:00.000000Z"}}
    patch = kopf.Patch({"status": dict(final)})
    storage = progress_storage()
    storage.store(key=KEY, record={**RECORD, "success": True}, body=obj, patch=patch)
    storage.purge(key=KEY, body=obj, patch=patch)
    assert set(patch) == {"status"}
    assert patch["status"]["kopf"] == {"progress": {"delete": None}}
    assert patch["status"]["deletion"] == final["deletion"]


def test_a_record_stored_and_purged_in_one_run_leaves_nothing() -> None:
    patch = kopf.Patch()
    storage = progress_storage()
    storage.store(key=KEY, record={**RECORD, "success": True}, body=body(), patch=patch)
    storage.purge(key=KEY, body=body(), patch=patch)
    assert dict(patch) == {}


def test_the_touch_dummy_is_in_status() -> None:
    patch = kopf.Patch()
    progress_storage().touch(body=body(), patch=patch, value="2026-11-29T00:00:10")
    assert dict(patch) == {"status": {"kopf": {"dummy": "2026-11-29T00:00:10"}}}
