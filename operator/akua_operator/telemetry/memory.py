"""Where the operator's memory goes: ``AKUA_TRACEMALLOC=1`` (docs/observability.md, "Memory").

With the variable set to a positive number, :func:`start_from_env` starts Python's
``tracemalloc`` (keeping that many frames per allocation; 1 is enough to name the line) and
logs the 25 allocation sites holding the most memory on ``SIGUSR1`` (``kill -USR1 <pid>``)
and when the process exits. Tracing costs CPU and memory of its own (roughly 10-30 %): a tool
for a measurement, not for production.
"""

from __future__ import annotations

import atexit
import logging
import os
import resource
import signal
import sys
import tracemalloc
from collections.abc import Mapping
from types import FrameType

log = logging.getLogger("akua_operator.memory")

ENV = "AKUA_TRACEMALLOC"
TOP = 25


def start_from_env(env: Mapping[str, str] | None = None) -> bool:
    """Start tracing when ``AKUA_TRACEMALLOC`` is a positive number (the frames kept per
    allocation); install the SIGUSR1 and exit reports. Returns whether tracing is on."""
    env = os.environ if env is None else env
    raw = (env.get(ENV) or "").strip()
    try:
        frames = int(raw) if raw else 0
    except ValueError:
        log.warning("%s=%r is not a number: memory tracing stays off", ENV, raw)
        return False
    if frames <= 0:
        return False
    if not tracemalloc.is_tracing():
        tracemalloc.start(min(frames, 64))
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _on_signal)
    atexit.register(report, "exit")
    log.info(
        "%s: tracemalloc on (%d frame(s)); `kill -USR1 %d` logs the top %d allocation sites",
        ENV,
        frames,
        os.getpid(),
        TOP,
    )
    return True


def _on_signal(signum: int, frame: FrameType | None) -> None:
    report("SIGUSR1")


def top_sites(limit: int = TOP) -> list[str]:
    """The ``limit`` source lines holding the most traced memory, one line of text each."""
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
            tracemalloc.Filter(False, "<unknown>"),
        )
    )
    lines = []
    for i, stat in enumerate(snapshot.statistics("lineno")[:limit], start=1):
        where = stat.traceback[0]
        lines.append(
            f"{i:2d}. {_short(where.filename)}:{where.lineno}: "
            f"{stat.size / 1024:.1f} KiB in {stat.count} blocks"
        )
    return lines


def report(trigger: str) -> None:
    """Log the top allocation sites (and the traced total and peak RSS) at INFO."""
    if not tracemalloc.is_tracing():
        return
    current, peak = tracemalloc.get_traced_memory()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    text = "\n".join(top_sites())
    log.info(
        "tracemalloc (%s): traced %.1f MiB now, %.1f MiB at peak; peak RSS %.1f MiB; top %d:\n%s",
        trigger,
        current / 2**20,
        peak / 2**20,
        rss,
        TOP,
        text,
    )


def _short(filename: str) -> str:
    """A path from the package or site-packages root on (shorter lines, no home paths)."""
    for marker in ("site-packages/", "akua_operator/"):
        at = filename.rfind(marker)
        if at >= 0:
            start = at + len(marker) if marker == "site-packages/" else at
            return filename[start:]
    for root in sys.path:
        if root and filename.startswith(root):
            return filename[len(root) :].lstrip("/")
    return filename
