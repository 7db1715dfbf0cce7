"""The canonical schema: declared once, the types the issue asks for, and part of the code version."""

from __future__ import annotations

import pyarrow as pa

from taxi_assets.model import schema as schema
from taxi_assets.model.code_version import trips_code_version
from taxi_assets.model.schema import COLUMN_NAMES, COLUMNS, PARTITION_COLUMN, REQUIRED, quarantine_schema, trips_schema
from taxi_assets.synth import month_schema


def test_columns_keep_the_published_file_order_then_the_partition_column():
    published = month_schema("2025-01").names  # the 25-column era
    assert list(COLUMN_NAMES) == published
    assert trips_schema().names == [*published, PARTITION_COLUMN]


def test_types_follow_the_issue():
    types = {f.name: f.type for f in trips_schema()}
    strings = ["hvfhs_license_num", "dispatching_base_num", "originating_base_num"]
    assert all(types[c] == pa.string() for c in strings)
    assert types["PULocationID"] == types["DOLocationID"] == pa.int32()
    assert types["trip_time"] == pa.int64()
    money = [
        "trip_miles", "base_passenger_fare", "tolls", "bcf", "sales_tax", "congestion_surcharge",
        "airport_fee", "tips", "driver_pay", "cbd_congestion_fee",
    ]  # fmt: skip
    assert all(types[c] == pa.float64() for c in money)
    assert all(types[c] == pa.bool_() for c in COLUMN_NAMES if c.endswith("_flag"))
    timestamps = [c for c in COLUMN_NAMES if c.endswith("_datetime")]
    assert len(timestamps) == 4
    assert all(types[c] == pa.timestamp("us") for c in timestamps)
    assert types[PARTITION_COLUMN] == pa.string()
    assert not trips_schema().field(PARTITION_COLUMN).nullable


def test_only_the_2025_column_may_be_absent_and_every_column_is_described():
    assert [c.name for c in COLUMNS if c.may_be_absent] == ["cbd_congestion_fee"]
    assert all(f.metadata and f.metadata[b"description"] for f in trips_schema() if f.name != PARTITION_COLUMN)
    assert "cbd_congestion_fee" not in REQUIRED
    assert "originating_base_num" not in REQUIRED
    assert {"pickup_datetime", "PULocationID", "base_passenger_fare"} <= set(REQUIRED)


def test_quarantine_holds_the_trip_its_source_row_and_every_rule_broken():
    q = quarantine_schema()
    assert q.names == [*trips_schema().names, "source_row", "rule", "reason"]
    assert q.field("rule").type == pa.list_(pa.string())


def test_money_type_is_justified_in_the_module_docstring():
    doc = schema.__doc__ or ""
    assert "float64" in doc
    assert "float32" in doc
    assert "decimal" in doc


def test_schema_version_and_schema_text_are_part_of_the_code_version(monkeypatch):
    before = trips_code_version()
    monkeypatch.setattr("taxi_assets.model.code_version.SCHEMA_VERSION", "fhvhv-schema-test")
    assert trips_code_version() != before
