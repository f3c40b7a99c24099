"""Log formats (text or one JSON object per line) and secret redaction for every log record.

Redaction is installed two ways by :func:`install_redaction`, because a filter on the root
*logger* only sees records logged to the root logger itself, not those propagated from child
loggers, and kopf posts records of its ``kopf.objects`` logger as Kubernetes Events through a
handler of its own:

* a :class:`RedactingFilter` on the root logger and on each of its handlers;
* a wrapper around the log record factory, so that every record is redacted the moment it is
  created, whichever logger and handler it goes to afterwards (kopf's Event poster included).

What is redacted: Akua tokens (``sk_akua_...``), ``Bearer`` credentials, ``Basic`` credentials,
kubeconfig secrets (``client-key-data``, ``token``, ``password`` fields in YAML, JSON or Python
reprs) and PEM private-key blocks, in the message, its arguments, the exception text and stack.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Callable
from typing import Any, Final, Literal, TextIO

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "LogFormat",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "install_redaction",
    "redact",
]

LogFormat = Literal["text", "json"]

REDACTED: Final = "[REDACTED]"

# Each pattern runs only when one of its trigger words occurs in the lower-cased text: most log
# lines contain none, and they then cost a lower() and a few substring searches.
_PATTERNS: Final[tuple[tuple[tuple[str, ...], re.Pattern[str], str], ...]] = (
    # PEM private keys (multi-line), e.g. a decoded client key.
    (
        ("private key",),
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # HTTP Authorization credentials.
    (("bearer",), re.compile(r"\b([Bb]earer)(\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1\2{REDACTED}"),
    (("basic",), re.compile(r"\b(Basic)(\s+)[A-Za-z0-9+/]{12,}=*"), rf"\1\2{REDACTED}"),
    # Secret-bearing fields: kubeconfig ``client-key-data:``/``token:``/``password:`` and the same
    # keys in JSON or Python reprs ("token": "...", 'client-key-data': '...'), AKUA_TOKEN=...
    (
        ("token", "passw", "secret", "key-data", "key_data"),
        re.compile(
            r"((?:client[-_]key[-_]data|token|password|passwd|client[-_]secret|secret[-_]key)"
            r"[\"']?\s*[:=]\s*)([\"']?)(?!\[REDACTED\])[^\s\"',}\]]+",
            re.IGNORECASE,
        ),
        rf"\1\2{REDACTED}",
    ),
    # Akua API tokens anywhere else.
    (("sk_akua_",), re.compile(r"sk_akua_[A-Za-z0-9_]+"), f"sk_akua_{REDACTED}"),
)


def redact(text: str) -> str:
    """``text`` with every secret-looking part replaced by ``[REDACTED]``."""
    lower = text.lower()
    for triggers, pattern, replacement in _PATTERNS:
        if any(t in lower for t in triggers):
            text = pattern.sub(replacement, text)
            lower = text.lower()
    return text


_MARK: Final = "_akua_redacted"


def _redact_record(record: logging.LogRecord) -> None:
    if getattr(record, _MARK, False):
        return
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed call must still not leak its arguments
        message = f"{record.msg!s} {record.args!r}"
    record.msg = redact(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    setattr(record, _MARK, True)


class RedactingFilter(logging.Filter):
    """Rewrites each record (message with its args merged, exception and stack text) redacted.

    Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record)
        return True


_factory_installed: Callable[..., logging.LogRecord] | None = None


def install_redaction(root: logging.Logger | None = None) -> RedactingFilter:
    """Install redaction on the root logger, its handlers, and the record factory (idempotent)."""
    global _factory_installed  # noqa: PLW0603 - the record factory is process-global by design
    root = root or logging.getLogger()
    redactor = next((f for f in root.filters if isinstance(f, RedactingFilter)), None)
    if redactor is None:
        redactor = RedactingFilter()
        root.addFilter(redactor)
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(redactor)

    current = logging.getLogRecordFactory()
    if current is not _factory_installed:
        previous = current

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = factory
    return redactor


def _k8s_ref(record: logging.LogRecord) -> dict[str, Any]:
    ref = getattr(record, "k8s_ref", None)
    return ref if isinstance(ref, dict) else {}


def _iso_time(created: float) -> str:
    moment = datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line.

    Keys: ``time`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``; with
    ``namespace``, ``name`` (and ``uid``) when kopf provides the object reference; ``exception``
    and ``stack`` when present; and the items of an ``akua`` dict passed as
    ``extra={"akua": {...}}``.
    """

    def format(self, record: logging.LogRecord) -> str:
        _redact_record(record)
        entry: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        ref = _k8s_ref(record)
        for key in ("namespace", "name", "uid"):
            if ref.get(key):
                entry[key] = str(ref[key])
        fields = getattr(record, "akua", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-11-28T13:20:00.123Z INFO    kopf.objects [ns/name] message``."""

    def format(self, record: logging.LogRecord) -> str:
        _redact_record(record)
        ref = _k8s_ref(record)
        prefix = ""
        if ref.get("name"):
            ns = ref.get("namespace")
            prefix = f"[{ns}/{ref['name']}] " if ns else f"[{ref['name']}] "
        line = (
            f"{_iso_time(record.created)} {record.levelname:<7} {record.name} "
            f"{prefix}{record.getMessage()}"
        )
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


class _AkuaStreamHandler(logging.StreamHandler[TextIO]):
    """Marks the handler we installed, so reconfiguring replaces it instead of duplicating."""


def configure_logging(
    log_format: LogFormat = "text",
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send all logs to ``stream`` (stderr) in ``log_format``, with redaction installed.

    Replaces a handler installed by an earlier call (and kopf's own stream handler, if any), so
    every line is in one format. Returns the handler.
    """
    if log_format not in ("text", "json"):
        raise ValueError(f"unknown log format {log_format!r}: use 'text' or 'json'")
    root = logging.getLogger()
    handler = _AkuaStreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.handlers[:] = [
        h
        for h in root.handlers
        if not isinstance(h, _AkuaStreamHandler) and type(h).__name__ != "_KopfStreamHandler"
    ]
    root.addHandler(handler)
    root.setLevel(level)
    install_redaction(root)
    # asyncio's debug chatter is not the operator's: keep only warnings.
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    return handler
