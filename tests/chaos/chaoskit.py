"""Helpers of the chaos suite (the heavy lifting lives in bench/harness.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """How big a chaos run is: small in `make test`, full with --chaos-full."""

    full: bool
    deletions: int
    kills: int
    examples: int
