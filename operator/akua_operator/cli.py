"""The ``akua-operator`` command."""

from __future__ import annotations

import argparse

from akua_operator import __version__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``akua-operator`` console script."""
    parser = argparse.ArgumentParser(prog="akua-operator")
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(argv)
    return 0
