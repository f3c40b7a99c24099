"""AKUA_TRACEMALLOC (telemetry/memory.py): off unless set; when set, SIGUSR1 logs the top 25
allocation sites."""

from __future__ import annotations

import logging
import os
import signal
import tracemalloc
from collections.abc import Iterator

import pytest

from akua_operator.telemetry import memory


@pytest.fixture
def restore() -> Iterator[None]:
    before = signal.getsignal(signal.SIGUSR1)
    try:
        yield
    finally:
        tracemalloc.stop()
        signal.signal(signal.SIGUSR1, before)


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_off_unless_set_to_a_positive_number(value: str, restore: None) -> None:
    assert memory.start_from_env({"AKUA_TRACEMALLOC": value}) is False
    assert not tracemalloc.is_tracing()


def test_sigusr1_logs_the_top_allocation_sites(
    restore: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert memory.start_from_env({"AKUA_TRACEMALLOC": "1"}) is True
    assert tracemalloc.is_tracing()
    kept = [bytearray(1024) for _ in range(2000)]  # ~2 MiB held at one line of this file
    with caplog.at_level(logging.INFO, logger="akua_operator.memory"):
        os.kill(os.getpid(), signal.SIGUSR1)
    (record,) = [r for r in caplog.records if "tracemalloc (SIGUSR1)" in r.getMessage()]
    sites = record.getMessage().splitlines()[1:]
    assert 1 <= len(sites) <= memory.TOP
    assert "test_memory_report.py" in sites[0]  # the biggest holder is named first
    assert len(kept) == 2000
