"""Oracles of the end-to-end and chaos tests: what "exactly once" is measured against.

The exactly-once oracle reads the simulator's *journal* (every API request it answered, with the
``idempotency-key`` and ``if-match`` it carried and the status it got) and its *operations*
(every operation it started). It does not trust the simulator to be kind: with
``delete_while_deleting_returns_operation`` on, a second DELETE while one runs is answered with
the running operation (no second operation starts), so counting operations alone cannot see it.
Here every *accepted* DELETE (2xx) with a key not seen before counts as a new attempt, whatever
the simulator did with it, and a resend of the same request with the same key (after a kill or a
lost answer) is allowed.

Imported by tests/e2e and tests/chaos (tests/ is on ``sys.path`` through tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Answers after which a client may drop a key: the server refused the request for good.
REFUSED = frozenset({400, 404, 409, 412, 422})


def _op_type(op: Mapping[str, Any]) -> str | None:
    return op.get("type") or (op.get("metadata") or {}).get("type")


def _op_cluster(op: Mapping[str, Any]) -> str | None:
    return op.get("cluster_id") or (op.get("metadata") or {}).get("cluster_id")


def _delete_target(entry: Mapping[str, Any]) -> str | None:
    if entry.get("method") != "DELETE":
        return None
    path = str(entry.get("path") or "")
    head, _, cluster_id = path.rpartition("/")
    return cluster_id if head == "/clusters" and cluster_id else None


@dataclass
class DeleteRecord:
    """What the simulator saw of the deletion of one cluster."""

    cluster_id: str
    #: delete operations the simulator started for the cluster (its own state)
    operations: list[str] = field(default_factory=list)
    #: every DELETE request, in order: (key, if-match, status; None = no answer was sent)
    requests: list[tuple[str | None, str | None, int | None]] = field(default_factory=list)

    @property
    def keys(self) -> list[str | None]:
        """Distinct idempotency keys of all DELETEs, in first-use order."""
        return list(dict.fromkeys(k for k, _, _ in self.requests))

    @property
    def accepted_keys(self) -> list[str | None]:
        """Distinct keys of the DELETEs Akua accepted (2xx): one per attempt started."""
        return list(
            dict.fromkeys(k for k, _, s in self.requests if s is not None and 200 <= s < 300)
        )

    @property
    def accepted(self) -> int:
        return sum(1 for _, _, s in self.requests if s is not None and 200 <= s < 300)

    @property
    def resends(self) -> int:
        """Requests that repeated an earlier key (allowed: same request, same key)."""
        return len(self.requests) - len(self.keys)

    def abandoned_keys(self) -> list[str | None]:
        """Keys given up without a refusal: never accepted, and never answered with a 4xx
        that says the request cannot succeed (only errors, 5xx/429 or no answer at all). The
        request may have been processed: a new key then risks a second operation."""
        out = []
        for key in self.keys:
            answers = {s for k, _, s in self.requests if k == key}
            if any(s is not None and 200 <= s < 300 for s in answers):
                continue
            if answers & REFUSED:
                continue
            out.append(key)
        return out

    def summary(self) -> str:
        return (
            f"{self.cluster_id}: operations {len(self.operations)}, DELETEs {len(self.requests)} "
            f"(accepted {self.accepted}, resends {self.resends}), keys {len(self.keys)} "
            f"(accepted {len(self.accepted_keys)})"
        )


def delete_records(
    journal: Iterable[Mapping[str, Any]],
    operations: Iterable[Mapping[str, Any]],
    cluster_ids: Sequence[str],
) -> dict[str, DeleteRecord]:
    """Per cluster: the delete operations started and every DELETE request (journal order).

    ``operations``: the simulator's operations, from ``/_sim/state`` (``metadata.type`` and
    ``metadata.cluster_id``) or from bench/harness.py's ``/_sim/operations`` (``type``,
    ``cluster_id``).
    """
    records = {cid: DeleteRecord(cid) for cid in cluster_ids}
    for op in operations:
        cid = _op_cluster(op)
        if _op_type(op) == "cluster.delete" and cid in records:
            records[cid].operations.append(str(op["id"]))
    for entry in sorted(journal, key=lambda e: int(e.get("seq") or 0)):
        cid = _delete_target(entry)
        if cid in records:
            records[cid].requests.append(
                (entry.get("idempotency_key"), entry.get("if_match"), entry.get("status"))
            )
    return records


def assert_exactly_once(
    journal: Iterable[Mapping[str, Any]],
    operations: Iterable[Mapping[str, Any]],
    cluster_ids: Sequence[str],
    *,
    attempts: int = 1,
) -> dict[str, DeleteRecord]:
    """Each cluster was deleted by exactly ``attempts`` operations, each from one request.

    - the simulator started ``attempts`` delete operations for it;
    - its accepted DELETEs carried ``attempts`` distinct keys (a second DELETE with a new key
      while an operation runs is a second attempt here, even if the simulator answered it
      with the running operation);
    - no key was given up without a refusal (a 4xx), so no unknown outcome was left behind;
    - every DELETE carried a key and an if-match.
    """
    records = delete_records(journal, operations, cluster_ids)
    problems = []
    for cid, rec in records.items():
        if len(rec.operations) != attempts:
            problems.append(f"{rec.summary()}: {len(rec.operations)} operations started")
        if len(rec.accepted_keys) != attempts:
            problems.append(f"{rec.summary()}: accepted keys {rec.accepted_keys}")
        if abandoned := rec.abandoned_keys():
            problems.append(f"{rec.summary()}: keys given up without a refusal {abandoned}")
        if any(k is None or not m for k, m, _ in rec.requests):
            problems.append(f"{cid}: a DELETE without idempotency-key or if-match")
    assert not problems, "exactly-once violated:\n" + "\n".join(problems)
    return records


def in_flight_at(
    journal: Iterable[Mapping[str, Any]], moment: float, method: str = "DELETE"
) -> list[dict[str, Any]]:
    """Requests the simulator had received but not yet answered at ``moment`` (Unix time).

    The journal records a request when it is answered, with ``time`` = its arrival and
    ``latency_ms`` = the injected delay before it was handled: a request was in flight from
    ``time`` to ``time + latency_ms``. (Same clock: the simulator runs on this machine with
    ``time.time``.)
    """
    out = []
    for entry in journal:
        if entry.get("method") != method or entry.get("status") is None:
            continue
        start = float(entry["time"])
        end = start + float(entry.get("latency_ms") or 0.0) / 1000.0
        if start <= moment < end:
            out.append(dict(entry))
    return out
