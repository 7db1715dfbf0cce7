"""The row digest: what the stream takes (dictionary strings, keep masks) is what DuckDB reads back.

Every era's published schema goes through the real reader, casts, rules and writer into a real Delta table;
the digest DuckDB computes over the committed month must equal the streamed one exactly."""

from __future__ import annotations

import hashlib
import math
import random
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from month_builders import valid_month, with_values, write_source

from partitions.delta_log import read_records
from partitions.records import MaterializationRecord
from partitions.source import SourceFile
from taxi_assets.io.duckdb import open_connection, register_table
from taxi_assets.io.parquet_files import WriteLayout
from taxi_assets.io.sink import ROWS_DIGEST, Written, write_month
from taxi_assets.model.row_digest import IDENTITY, METHOD, RowsDigest, StreamDigest, digest_sql
from taxi_assets.model.schema import COLUMN_NAMES, PARTITION_COLUMN, REQUIRED, trips_batch_schema, trips_schema
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file

SMALL = WriteLayout(rows_per_group=700, groups_per_file=2, lanes=2)
ERAS = ("2019-02", "2019-04", "2020-04", "2021-06", "2023-01", "2023-02", "2025-01")  # A, B, C, C, C, D, E


def settings(tmp_path: Path) -> Settings:
    return Settings.resolve(source=str(tmp_path / "source"), sink=str(tmp_path / "sink"), env={})


def synth_source(cfg: Settings, month: str, rows: int, **options) -> SourceFile:
    made = write_month_file(cfg.source, month, rows, seed=5, anomalies="stress", **options)
    return SourceFile(partition=month, uri=made.uri, size=made.bytes, fingerprint="test", last_modified=None)


def write(cfg: Settings, month: str, source: SourceFile) -> Written:
    record = MaterializationRecord(partition=month, status="success", run_id="run-1", code_version="cv")
    return write_month(source, cfg, record, now=lambda: "2026-11-24T00:00:00+00:00", layout=SMALL)


def committed(cfg: Settings, month: str, version: int) -> RowsDigest:
    """The digest of the committed month, as the checks take it (DuckDB over the pinned Delta version)."""
    con = open_connection()
    try:
        register_table(con, "t", cfg.trips_uri, schema=trips_schema(), version=version)
        rows, total = con.execute(digest_sql("t", where=f"{PARTITION_COLUMN} = ?"), [month]).fetchone()
    finally:
        con.close()
    return RowsDigest(rows, int(total or 0))


def streamed(*batches: pa.RecordBatch, keep: pa.BooleanArray | None = None) -> RowsDigest:
    with StreamDigest() as digest:
        for batch in batches:
            digest.add(batch, keep)
        return digest.result()


def written_rows(cfg: Settings, month: str) -> pa.Table:
    table = DeltaTable(cfg.trips_uri).to_pyarrow_table(filters=[(PARTITION_COLUMN, "=", month)])
    return table.select(trips_schema().names)  # the partition column last, as in the schema


@pytest.mark.parametrize("month", ERAS)
def test_streamed_digest_equals_the_committed_one_in_every_era(tmp_path, month):
    cfg = settings(tmp_path)
    # stress: nulls in optional and required columns, bad flags, off-month pickups...; plus exact duplicates
    written = write(cfg, month, synth_source(cfg, month, 3_000, extra={"exact_duplicate": 0.01}))

    assert written.rows_quarantined > 0  # the keep mask was exercised
    assert written.digest.rows == written.rows_written
    assert written.digest == committed(cfg, month, written.trips_version)
    extra = read_records(cfg.trips_uri)[month].latest_success.extra
    assert RowsDigest.from_text(extra[ROWS_DIGEST]) == written.digest


def test_nulls_nan_and_signed_zeros_digest_alike_on_both_sides(tmp_path):
    month = "2022-09"
    cfg = settings(tmp_path)
    table = with_values(
        valid_month(month, 2_000),
        {
            "airport_fee": {0: math.nan, 1: -0.0, 2: 0.0, 3: None, 4: math.inf},
            "tips": {5: -0.0, 6: math.nan},
            "originating_base_num": {7: None, 8: ""},
            "on_scene_datetime": {9: None},
            "shared_request_flag": {10: None, 11: "x"},
        },
    )
    written = write(cfg, month, write_source(tmp_path / "src", month, table))
    assert written.digest.rows == written.rows_written > 1_990
    assert written.digest == committed(cfg, month, written.trips_version)


def test_dictionary_and_plain_strings_digest_alike_and_the_keep_mask_selects_rows(tmp_path):
    month = "2023-02"
    cfg = settings(tmp_path)
    written = write(cfg, month, synth_source(cfg, month, 1_500))
    plain = written_rows(cfg, month).combine_chunks().to_batches()[0]
    dictionary = pa.Table.from_batches([plain]).cast(trips_batch_schema()).to_batches()[0]
    assert pa.types.is_dictionary(dictionary.schema.field("hvfhs_license_num").type)

    assert streamed(plain) == streamed(dictionary) == written.digest
    keep = pa.array([i % 3 != 0 for i in range(plain.num_rows)])
    assert streamed(dictionary, keep=keep) == streamed(plain.filter(keep))
    assert streamed(dictionary, keep=keep).rows == keep.true_count


def test_the_digest_ignores_order_and_sees_a_duplicated_lost_or_altered_trip():
    canonical = _canonical(valid_month("2023-03", 400))
    order = list(range(canonical.num_rows))
    random.Random(7).shuffle(order)
    shuffled = canonical.take(order)
    base = streamed(*canonical.to_batches(max_chunksize=100))
    assert streamed(*shuffled.to_batches(max_chunksize=37)) == base

    duplicated = pa.concat_tables([canonical.slice(1), canonical.slice(2, 1)])  # row 0 lost, row 2 twice
    assert streamed(*duplicated.to_batches()).rows == base.rows
    assert streamed(*duplicated.to_batches()) != base
    fare = canonical["base_passenger_fare"][3].as_py()
    altered = with_values(canonical, {"base_passenger_fare": {3: fare + 0.01}})
    assert streamed(*altered.to_batches()) != base
    swapped = with_values(canonical, {"PULocationID": {3: canonical["DOLocationID"][3].as_py()}})
    assert canonical["DOLocationID"][3] != canonical["PULocationID"][3]
    assert streamed(*swapped.to_batches()) != base


def test_the_identity_columns_are_required_in_schema_order_and_the_only_ones_hashed():
    assert list(IDENTITY) == [c for c in COLUMN_NAMES if c in IDENTITY]
    assert set(IDENTITY) <= set(REQUIRED)  # never null in trips: a null would hash like any other null
    assert METHOD.endswith(hashlib.sha256(",".join(IDENTITY).encode()).hexdigest()[:8])
    canonical = _canonical(valid_month("2023-03", 200))
    base = streamed(*canonical.to_batches())
    tips = with_values(canonical, {"tips": {3: canonical["tips"][3].as_py() + 0.01}})  # not an identity column
    assert streamed(*tips.to_batches()) == base


def test_text_round_trip_and_only_the_same_method_compares():
    fp = RowsDigest(16_000_000, 147444755723445527112158316)
    assert RowsDigest.from_text(fp.to_text()) == fp
    assert fp.to_text().startswith(f"{METHOD}:16000000:")
    assert RowsDigest.from_text("") is None
    assert RowsDigest.from_text("garbage") is None
    other = RowsDigest(1, 2, method="duckdb-0.0.1-hash-sum")
    assert not fp.comparable(other)
    assert fp + RowsDigest(1, 2) == RowsDigest(16_000_001, 147444755723445527112158318)
    with pytest.raises(ValueError, match="cannot add"):
        fp + other


def test_add_outside_the_with_block_is_refused():
    batch = pa.record_batch({"a": [1]})
    with pytest.raises(RuntimeError, match="outside"):
        StreamDigest().add(batch)


def _canonical(table: pa.Table) -> pa.Table:
    """``table`` on :func:`trips_schema` (cast, flags as bools, the partition column added), as the writer holds it."""
    schema = trips_schema()
    columns = []
    for field in schema:
        if field.name == PARTITION_COLUMN:
            columns.append(pa.array(["2023-03"] * table.num_rows))
        elif pa.types.is_boolean(field.type):
            columns.append(pa.array([v == "Y" if v in ("Y", "N") else None for v in table[field.name].to_pylist()]))
        elif field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
