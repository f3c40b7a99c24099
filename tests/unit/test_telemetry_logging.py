"""Text and JSON log lines, and redaction of secrets from every log record."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from akua_operator.telemetry import logging as tlog
from akua_operator.telemetry.logging import REDACTED, configure_logging, redact

TOKEN = "sk_akua_Zx9_secretValue42"
KUBECONFIG = """apiVersion: v1
kind: Config
users:
- name: admin
  user:
    client-certificate-data: Q0VSVElGSUNBVEU=
    client-key-data: S0VZREFUQXNlY3JldA==
    token: eyJhbGciOiJSUzI1NiJ9.kubetoken
"""


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Configure logging into a buffer; restore the process's logging afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.filters[:], root.level, logging.getLogRecordFactory())
    saved_installed = tlog._factory_installed
    buffer = io.StringIO()
    try:
        yield buffer
    finally:
        root.handlers[:], root.filters[:] = saved[0], saved[1]
        root.setLevel(saved[2])
        logging.setLogRecordFactory(saved[3])
        tlog._factory_installed = saved_installed


def lines(buffer: io.StringIO) -> list[str]:
    return [line for line in buffer.getvalue().splitlines() if line]


def test_json_lines_parse_and_carry_fields(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    logging.getLogger("akua_operator.handlers").info("deleting %s in %ds", "c-1", 5)
    kopf_like = logging.LoggerAdapter(
        logging.getLogger("kopf.objects"),
        {"k8s_ref": {"namespace": "team-a", "name": "prod", "uid": "u-1", "kind": "AkuaCluster"}},
    )
    kopf_like.warning("Handler 'delete' failed temporarily")
    logging.getLogger("x").info("with fields", extra={"akua": {"operation_id": "op_1"}})
    entries = [json.loads(line) for line in lines(stream)]
    assert len(entries) == 3
    first, second, third = entries
    assert first["message"] == "deleting c-1 in 5s"
    assert first["level"] == "INFO"
    assert first["logger"] == "akua_operator.handlers"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "namespace" not in first
    assert second["namespace"] == "team-a"
    assert second["name"] == "prod"
    assert second["uid"] == "u-1"
    assert second["level"] == "WARNING"
    assert third["operation_id"] == "op_1"


def test_json_exception_is_one_line_with_the_traceback(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    try:
        raise ValueError("bad thing")
    except ValueError:
        logging.getLogger("t").exception("it failed")
    [line] = lines(stream)
    entry = json.loads(line)
    assert entry["message"] == "it failed"
    assert "ValueError: bad thing" in entry["exception"]


def test_text_format_with_object_prefix(stream: io.StringIO) -> None:
    configure_logging("text", stream=stream)
    adapter = logging.LoggerAdapter(
        logging.getLogger("kopf.objects"), {"k8s_ref": {"namespace": "ns", "name": "c"}}
    )
    adapter.info("created")
    [line] = lines(stream)
    assert line.endswith("INFO    kopf.objects [ns/c] created")


def test_reconfiguring_replaces_the_handler(stream: io.StringIO) -> None:
    configure_logging("text", stream=io.StringIO())
    configure_logging("json", stream=stream)
    logging.getLogger("t").info("once")
    assert len(lines(stream)) == 1
    json.loads(lines(stream)[0])


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ValueError, match="text"):
        configure_logging("yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_redaction_in_message_args_and_exceptions(stream: io.StringIO, fmt: str) -> None:
    configure_logging(fmt, stream=stream)  # type: ignore[arg-type]
    log = logging.getLogger("akua_operator.some.child")  # propagated, not logged on root
    log.info(f"token in message {TOKEN}")
    log.info("token in args %s and %r", TOKEN, {"token": "plain-secret-1"})
    log.info("header Authorization: Bearer abc.def-ghi_jkl")
    log.info("kubeconfig:\n%s", KUBECONFIG)
    try:
        raise RuntimeError(f"request failed with {TOKEN}")
    except RuntimeError:
        log.exception("boom")
    log.warning("stack", stack_info=True, extra={})
    out = stream.getvalue()
    for secret in (
        TOKEN,
        "Zx9_secretValue42",
        "plain-secret-1",
        "abc.def-ghi_jkl",
        "S0VZREFUQXNlY3JldA==",
        "eyJhbGciOiJSUzI1NiJ9.kubetoken",
    ):
        assert secret not in out
    assert out.count(REDACTED) >= 6
    assert "request failed with sk_akua_[REDACTED]" in out
    # Non-secret parts of a kubeconfig stay readable.
    assert "client-certificate-data: Q0VSVElGSUNBVEU=" in out


def test_redaction_reaches_handlers_of_non_root_loggers(stream: io.StringIO) -> None:
    """kopf posts kopf.objects records as Events through its own handler: redact there too."""
    configure_logging("text", stream=stream)
    seen: list[str] = []

    class Poster(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    objects = logging.getLogger("test.objects.poster")
    poster = Poster()
    objects.addHandler(poster)
    try:
        objects.error("cannot delete: %s", f"401 for token {TOKEN}")
        try:
            raise PermissionError(TOKEN)
        except PermissionError:
            objects.exception("failed")
    finally:
        objects.removeHandler(poster)
    assert seen
    assert all(TOKEN not in line for line in seen)
    assert "401 for token sk_akua_[REDACTED]" in seen[0]


def test_a_malformed_log_call_does_not_leak_its_args(stream: io.StringIO) -> None:
    configure_logging("text", stream=stream)
    logging.getLogger("t").info("two placeholders %s %s", TOKEN)  # noqa: PLE1206 - on purpose
    assert TOKEN not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"key={TOKEN}", "key=sk_akua_[REDACTED]"),
        ("AKUA_TOKEN=abc123", "AKUA_TOKEN=[REDACTED]"),
        ('{"access_token": "xyz"}', '{"access_token": "[REDACTED]"}'),
        ("'client-key-data': 'AAAA'", "'client-key-data': '[REDACTED]'"),
        ("password: hunter2", "password: [REDACTED]"),
        ("Basic dXNlcjpwYXNzd29yZA==", "Basic [REDACTED]"),
        (
            "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----",
            "[REDACTED]",
        ),
        ("cluster c-1 is active (etag W/1)", "cluster c-1 is active (etag W/1)"),
    ],
)
def test_redact_patterns(text: str, expected: str) -> None:
    assert redact(text) == expected
