"""The claim memory of kube/claims.py: a claim this process holds costs no Lease read on the
re-runs of a handler; a claim held by another resource is read every time."""

from __future__ import annotations

import pytest

from akua_operator.kube.claims import HELD_TTL, Claimant, ClaimsIO

ME = Claimant("ns", "prod", "uid-1")
OTHER = Claimant("ns", "copy", "uid-2")


class CountingClaims(ClaimsIO):
    """ClaimsIO whose Lease round trip (claim_sync) answers ``owner`` and counts the reads."""

    def __init__(self, owner: str | None) -> None:
        self.now = 1000.0
        super().__init__(None, "akua-system", watched=None, clock=lambda: self.now)
        self.owner = owner
        self.reads = 0
        self.released: list[str] = []

    def claim_sync(self, cluster_id: str, me: Claimant) -> str | None:
        self.reads += 1
        return self.owner

    def release_sync(self, cluster_id: str, me: Claimant) -> None:
        self.released.append(cluster_id)


async def test_a_held_claim_is_read_once_then_answered_from_memory() -> None:
    claims = CountingClaims(owner=None)
    for _ in range(5):
        assert await claims.claim("clu_1", ME) is None
        claims.now += 20.0  # one re-run every 20 s
    assert claims.reads == 1


async def test_a_held_claim_is_read_again_after_the_ttl() -> None:
    claims = CountingClaims(owner=None)
    await claims.claim("clu_1", ME)
    claims.now += HELD_TTL + 1
    await claims.claim("clu_1", ME)
    assert claims.reads == 2


async def test_a_claim_held_by_another_resource_is_read_every_time() -> None:
    claims = CountingClaims(owner=OTHER.display)
    for _ in range(3):
        assert await claims.claim("clu_1", ME) == OTHER.display
    assert claims.reads == 3


async def test_another_claimant_in_this_process_reads_the_lease_and_forgets_ours() -> None:
    claims = CountingClaims(owner=None)
    await claims.claim("clu_1", ME)
    claims.owner = ME.display
    assert await claims.claim("clu_1", OTHER) == ME.display  # never answered from ME's memory
    claims.owner = None
    await claims.claim("clu_1", ME)
    assert claims.reads == 3


@pytest.mark.parametrize("who", [ME, OTHER])
async def test_a_release_forgets_the_claim(who: Claimant) -> None:
    claims = CountingClaims(owner=None)
    await claims.claim("clu_1", ME)
    await claims.release("clu_1", who)
    assert claims.released == ["clu_1"]
    await claims.claim("clu_1", ME)
    assert claims.reads == (2 if who == ME else 1)
