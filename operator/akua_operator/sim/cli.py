"""The ``akua-sim`` command (placeholder until the simulator lands)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``akua-sim`` console script."""
    return 0
