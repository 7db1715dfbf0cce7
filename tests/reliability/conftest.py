"""Fixtures of the reliability tests: small streaming settings and the figures ``benchmarks/reliability_report.py``
collects (each test records what it tried and what came of it through pytest's ``record_property``)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from s3_proxy import Proxy

from taxi_assets.assets import trips as steps
from taxi_assets.io import reader, sink
from taxi_assets.io.parquet_files import WriteLayout

# A few hundred rows still stream as several batches into several data files, so a failure part-way
# through a month really has files behind it.
SMALL_LAYOUT = WriteLayout(rows_per_group=100, groups_per_file=1, lanes=1)
SMALL_BATCH = 100


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stream a month in 100-row batches and write one 100-row group per data file (production: 256 Ki / 768 Ki)."""
    monkeypatch.setattr(steps, "write_month", functools.partial(sink.write_month, layout=SMALL_LAYOUT))
    monkeypatch.setattr(sink, "MonthReader", functools.partial(reader.MonthReader, batch_rows=SMALL_BATCH))


@pytest.fixture
def figure(record_property: Callable[[str, object], None]) -> Callable[..., None]:
    """``figure(kind, **facts)``: one line of the reliability report, e.g. ``figure("bad_input", case=..., ...)``."""

    def record(kind: str, **facts: Any) -> None:
        record_property(f"reliability.{kind}", json.dumps(facts, sort_keys=True, default=str))

    return record


@pytest.fixture(scope="module")
def proxy(s3_server):
    """The fault proxy (``s3_proxy.Proxy``) in front of the test S3 server, one per test module."""
    running = Proxy(s3_server.endpoint)
    yield running
    running.close()
