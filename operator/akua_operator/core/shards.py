"""Which operator shard serves an AkuaCluster (``--shard``, ``--shard-names``; pure).

A named shard serves the AkuaClusters labelled ``akua.dev/shard=<its name>``; the default shard
(``--shard`` empty) serves every other one: no label, or a label naming no configured shard.
Every shard is told the full list of named shards (``--shard-names``), so they all agree on who
owns what from the labels alone.

Each shard holds its own finalizer (:func:`finalizer_of`): kopf adds and removes only the
finalizer it is configured with, so a shard that does not serve an object never touches the
finalizer of the shard that does (kopf removes its finalizer from every object its handler
filters leave out, and releases a deleting one it holds when no handler of its own is left).

Handing over (:meth:`Shards.handles`):

- A live object relabelled from shard A to shard B: B serves it from the relabel on (its kopf
  adds B's finalizer, then it adopts status and cluster id as they are; nothing is created or
  deleted). A keeps serving it only while it holds A's finalizer and B's finalizer is not on it
  yet, so there is never a moment without a finalizer that would let a deletion pass unseen;
  once B's finalizer is there, A lets go (its kopf drops A's finalizer).
- An object being deleted is never handed over: the shard that started the deletion records
  itself in ``status.deletion.shard`` before any Akua call and alone finishes it; a relabel
  during the deletion changes nothing. Before the record exists, the label's owner starts it if
  it holds its finalizer; otherwise the first (by name, the default shard first) shard holding
  its finalizer does, so a deletion that follows a relabel at once is never left to a shard that
  holds no finalizer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from akua_operator.resource.models import FINALIZER

#: The label that picks a shard.
SHARD_LABEL = "akua.dev/shard"
#: How the default shard is spelled in ``status.deletion.shard`` (and accepted by ``--shard``);
#: no named shard may be called so.
DEFAULT_SHARD = "default"
#: A shard name: a DNS label short enough for the finalizer and peering names built from it.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


def check_name(name: str) -> str:
    """``name`` if it is a valid named shard, else ValueError."""
    if not _NAME.match(name):
        raise ValueError(
            f"shard name {name!r}: lowercase letters, digits and '-', at most 40 characters"
        )
    if name == DEFAULT_SHARD:
        raise ValueError(f"{DEFAULT_SHARD!r} is the default shard (--shard empty), not a name")
    return name


def finalizer_of(shard: str) -> str:
    """The finalizer a shard holds: the operator's finalizer for the default shard ("" or
    ``default``), ``akua.dev/finalizer-<name>`` for a named one."""
    return FINALIZER if shard in ("", DEFAULT_SHARD) else f"{FINALIZER}-{shard}"


def is_operator_finalizer(finalizer: str) -> bool:
    """A finalizer of some shard of this operator."""
    return finalizer == FINALIZER or finalizer.startswith(f"{FINALIZER}-")


def holds_operator_finalizer(finalizers: Iterable[str]) -> bool:
    return any(is_operator_finalizer(f) for f in finalizers)


def _shard_of_finalizer(finalizer: str) -> str | None:
    if finalizer == FINALIZER:
        return ""
    prefix = f"{FINALIZER}-"
    return finalizer[len(prefix) :] if finalizer.startswith(prefix) else None


@dataclass(frozen=True)
class Shards:
    """This process's shard (``name``, "" = the default shard) among every named shard."""

    name: str = ""
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name == DEFAULT_SHARD:
            object.__setattr__(self, "name", "")
        for n in self.names:
            check_name(n)
        if self.name:
            check_name(self.name)
            if self.name not in self.names:
                object.__setattr__(self, "names", tuple(sorted({*self.names, self.name})))

    @property
    def sharded(self) -> bool:
        """More than one shard is configured (else this process serves everything)."""
        return bool(self.names)

    @property
    def label(self) -> str:
        """This shard as written in ``status.deletion.shard``."""
        return self.name or DEFAULT_SHARD

    @property
    def finalizer(self) -> str:
        return finalizer_of(self.name)

    def owner(self, labels: Mapping[str, str] | None) -> str:
        """The shard the labels give the object to ("" = the default shard)."""
        value = (labels or {}).get(SHARD_LABEL, "")
        return value if value in self.names else ""

    def serves(self, labels: Mapping[str, str] | None) -> bool:
        """The labels give the object to this shard (the rule for a live object, without the
        hand-over period; what a list of live objects filters on)."""
        return self.owner(labels) == self.name

    def deletion_starter(self, owner: str, finalizers: Sequence[str]) -> str | None:
        """The shard that starts a deletion nobody has recorded yet: the labels' owner if it
        holds its finalizer, else the first configured shard (the default shard first, then by
        name) holding its finalizer; None if none does (nothing for any shard to do)."""
        if finalizer_of(owner) in finalizers:
            return owner
        held = (_shard_of_finalizer(f) for f in finalizers)
        holders = sorted(s for s in held if s is not None and (s == "" or s in self.names))
        return holders[0] if holders else None

    def handles(self, body: Mapping[str, Any]) -> bool:
        """This shard's handlers act on the object (module docstring: hand-over and deletion)."""
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        finalizers: Sequence[str] = meta.get("finalizers") or []
        owner = self.owner(labels)
        if meta.get("deletionTimestamp"):
            recorded = ((body.get("status") or {}).get("deletion") or {}).get("shard")
            if recorded:
                return bool(recorded == self.label)
            return self.deletion_starter(owner, finalizers) == self.name
        if owner == self.name:
            return True
        return self.finalizer in finalizers and finalizer_of(owner) not in finalizers


def parse_names(text: str) -> tuple[str, ...]:
    """``--shard-names a,b``: the named shards, sorted, each checked."""
    return tuple(sorted({check_name(n.strip()) for n in text.split(",") if n.strip()}))
