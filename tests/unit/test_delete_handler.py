"""The delete handler's last-resort net (handlers/akuacluster.py).

kopf releases the finalizer when a delete handler returns, and also when it fails permanently
(a PermanentError, or a timeout/retries limit): either would orphan the Akua cluster. So the
handler returns only when the core decided ``Release``; whatever else happens (any exception, a
spec that does not parse) becomes a TemporaryError, except that ``akua.dev/orphan: "true"``
still releases a resource whose spec does not parse.

The handler is called as kopf calls it (the function kopf registered); the Runtime is the
real one (its spec parsing) or one whose cycle raises.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from pydantic import SecretStr

from akua_operator import telemetry
from akua_operator.core.types import Action, Release, Requeue
from akua_operator.handlers.akuacluster import register
from akua_operator.handlers.runtime import ResourceState, Runtime
from akua_operator.kube import TokenSource
from akua_operator.settings import Settings

UID = "5d1c7f0e-0000-4000-8000-0000000000de"


def settings() -> Settings:
    return Settings(namespaces=("ns",))


class RaisingRuntime(Runtime):
    """A Runtime whose cycle fails with ``error`` (a bug, a broken dependency, ...)."""

    def __init__(self, error: BaseException | None = None, action: Action | None = None) -> None:
        super().__init__(settings(), token_source=TokenSource(token=SecretStr("sk_akua_x")))
        self.error = error
        self.action = action
        self.calls = 0

    async def cycle(self, body: Any, state: ResourceState, **kwargs: Any) -> Action:
        self.calls += 1
        if self.error is not None:
            raise self.error
        assert self.action is not None
        return self.action


def delete_handler(runtime: Runtime) -> Any:
    registry = kopf.OperatorRegistry()
    register(registry, runtime)
    (handler,) = [h for h in registry._changing.get_all_handlers() if h.id == "delete"]
    return handler


def body(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "prod",
            "namespace": "ns",
            "uid": UID,
            "generation": 1,
            "deletionTimestamp": datetime.now(tz=UTC).isoformat(),
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": {"clusterId": "clu_abc123", "etag": "e1"},
    }


async def call(runtime: Runtime, b: dict[str, Any]) -> Any:
    handler = delete_handler(runtime)
    return await handler.fn(
        body=b, memo=kopf.Memo(runtime=runtime), logger=logging.getLogger("t"), patch=kopf.Patch()
    )


def test_the_delete_handler_has_no_limit_that_would_fail_it_permanently() -> None:
    # kopf turns an exceeded timeout= or retries= into a permanent failure (= release).
    handler = delete_handler(RaisingRuntime(action=Release("x")))
    assert handler.timeout is None
    assert handler.retries is None
    assert handler.errors in (None, kopf.ErrorsMode.TEMPORARY)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("boom"),
        KeyError("status"),
        ValueError("bad"),
        AssertionError("a bug"),
        kopf.PermanentError("a permanent error from deep inside"),
        TimeoutError(),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_any_exception_keeps_the_finalizer(error: Exception) -> None:
    runtime = RaisingRuntime(error)
    with pytest.raises(kopf.TemporaryError) as raised:
        await call(runtime, body({"clusterId": "clu_abc123"}))
    assert not isinstance(raised.value, kopf.PermanentError)
    assert raised.value.delay is not None and raised.value.delay > 0
    assert runtime.calls == 1


async def test_an_exception_is_counted_in_handler_errors() -> None:
    registry = telemetry.current().metrics.registry

    def errors() -> float | None:
        return registry.get_sample_value(
            "akua_operator_handler_errors_total", {"handler": "delete"}
        )

    before = errors() or 0.0
    with pytest.raises(kopf.TemporaryError):
        await call(RaisingRuntime(RuntimeError("boom")), body({"clusterId": "clu_abc123"}))
    assert errors() == before + 1
    with pytest.raises(kopf.TemporaryError):  # an invalid spec is not an unexpected error
        await call(
            Runtime(settings(), token_source=TokenSource(token=SecretStr("sk_akua_x"))),
            body(UNPARSEABLE[0]),
        )
    assert errors() == before + 1


async def test_an_exception_keeps_the_finalizer_even_with_the_orphan_annotation() -> None:
    # The annotation is honoured by the core (which releases without any call); a failing
    # cycle is not a decision to release, whatever the annotations say.
    runtime = RaisingRuntime(RuntimeError("boom"))
    with pytest.raises(kopf.TemporaryError):
        await call(runtime, body({"clusterId": "clu_abc123"}, {"akua.dev/orphan": "true"}))


async def test_an_exception_text_is_not_put_in_the_retry_message() -> None:
    # kopf logs and posts the TemporaryError's text: only the exception's type goes there.
    runtime = RaisingRuntime(RuntimeError("token sk_akua_secret leaked"))
    with pytest.raises(kopf.TemporaryError) as raised:
        await call(runtime, body({"clusterId": "clu_abc123"}))
    assert "sk_akua_secret" not in str(raised.value)
    assert "RuntimeError" in str(raised.value)


UNPARSEABLE = [
    {"clusterId": 12345, "deletion": {"maxRetries": "many"}},
    {"clusterId": "clu_abc123", "deletion": {"policy": "Shred"}},
    {"clusterId": "clu_abc123", "deletion": {"maxRetries": -1}},
]


@pytest.mark.parametrize("spec", UNPARSEABLE)
async def test_an_unparseable_spec_never_releases(spec: dict[str, Any]) -> None:
    # The real Runtime (its spec parsing), not started: nothing else is reached.
    runtime = Runtime(settings(), token_source=TokenSource(token=SecretStr("sk_akua_x")))
    with pytest.raises(kopf.TemporaryError) as raised:
        await call(runtime, body(spec))
    assert not isinstance(raised.value, kopf.PermanentError)
    assert "invalid spec" in str(raised.value)


@pytest.mark.parametrize("value", ["true", "True", " TRUE "])
async def test_an_unparseable_spec_is_released_by_the_orphan_annotation(value: str) -> None:
    runtime = Runtime(settings(), token_source=TokenSource(token=SecretStr("sk_akua_x")))
    result = await call(runtime, body(UNPARSEABLE[1], {"akua.dev/orphan": value}))
    assert result is None  # returning: kopf removes the finalizer


@pytest.mark.parametrize("value", ["false", "yes", ""])
async def test_an_unparseable_spec_with_another_orphan_value_is_kept(value: str) -> None:
    runtime = Runtime(settings(), token_source=TokenSource(token=SecretStr("sk_akua_x")))
    with pytest.raises(kopf.TemporaryError):
        await call(runtime, body(UNPARSEABLE[1], {"akua.dev/orphan": value}))


async def test_only_a_release_decision_returns() -> None:
    assert await call(RaisingRuntime(action=Release("deleted")), body({"clusterId": "c"})) is None
    with pytest.raises(kopf.TemporaryError) as raised:
        await call(RaisingRuntime(action=Requeue(3.0, "backing off")), body({"clusterId": "c"}))
    assert raised.value.delay == 3.0
