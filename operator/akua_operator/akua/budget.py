"""The Akua request budget's priority classes (issue 12).

Every call the client sends belongs to one class; when the rate limit leaves less than every
caller wants, a higher class is served first (first come, first served within a class):

- ``COMPLETION``: noticing that an operation ended (``GET /operations`` sweeps, ``:wait``, the
  read of an ended operation's steps). A finished deletion is released only once it is noticed,
  so nothing else may delay it.
- ``WRITE``: DELETE and every other mutation (and the reads a mutation's decision needs):
  starting a deletion early shortens the whole wave.
- ``STEP``: reading a running operation's steps (``GET /operations/{id}``) to mirror them.
- ``OBSERVE``: routine observation of healthy clusters (``GET /clusters`` list sweeps and the
  per-object reads the list does not answer).

``default_priority`` is the class of an endpoint when the caller does not name one.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Priority", "default_priority"]


class Priority(IntEnum):
    """Lower value = served first."""

    COMPLETION = 0
    WRITE = 1
    STEP = 2
    OBSERVE = 3


def default_priority(method: str, template: str) -> Priority:
    """The class of ``method template`` (e.g. ``"GET", "/clusters/{id}"``) when not named."""
    if template.endswith(":wait") or (method == "GET" and template == "/operations"):
        return Priority.COMPLETION
    if method == "GET" and template == "/operations/{id}":
        return Priority.STEP
    if method == "GET" and template.startswith("/clusters"):
        return Priority.OBSERVE
    if method == "GET":
        return Priority.WRITE  # /workspaces and other reads a decision waits for
    return Priority.WRITE
