"""The DuckDB month checks and the checks table, on real Delta tables (local and the S3-compatible server).

Each failure mode is produced for real: a table written with rows of another month, with duplicated rows, with
nulls in a required column, or an expectation that does not match what was committed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from builders import local_settings, s3_settings
from deltalake import DeltaTable

from partitions.overwrite import commit_files, overwrite_partition
from partitions.records import MaterializationRecord
from taxi_assets import duckdb_connect
from taxi_assets.assets.trips import MonthResult, materialize_month, new_run_id, plan_months, run_month, verify_month
from taxi_assets.checks import verify
from taxi_assets.checks.store import CHECK_NAMES, CheckResult, checks_recorded_by, record_checks
from taxi_assets.checks.verify import verify_month_checks
from taxi_assets.errors import CheckFailed
from taxi_assets.io import parquet_files as _write
from taxi_assets.io.duckdb import open_connection, register_partition, register_table
from taxi_assets.io.parquet_files import FileSeries, data_schema
from taxi_assets.model.cleaning import PICKUP_TOLERANCE
from taxi_assets.model.row_digest import RowsDigest
from taxi_assets.model.schema import REQUIRED, trips_batch_schema, trips_schema
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file

MONTH = "2019-02"


def materialize(cfg: Settings, rows: int = 400) -> MonthResult:
    write_month_file(
        cfg.source, MONTH, rows, seed=3, anomalies="stress", storage_options=cfg.storage_options(cfg.source)
    )
    plan = plan_months(cfg)
    return run_month(plan.listing.files[MONTH], cfg, run_id=new_run_id(), code_version=plan.code_version)


@pytest.fixture(scope="module")
def month(tmp_path_factory) -> tuple[Settings, MonthResult]:
    cfg = local_settings(tmp_path_factory.mktemp("verify"))
    return cfg, materialize(cfg)


def checks_of(cfg: Settings, result: MonthResult, **changes) -> dict[str, CheckResult]:
    """All checks of ``result``'s committed versions; ``changes`` override the expectations or the tables."""
    key = changes.pop("month", MONTH)
    args = {
        "run_id": "test",
        "trips_uri": cfg.trips_uri,
        "trips_version": result.trips_version,
        "quarantine_uri": cfg.quarantine_uri,
        "quarantine_version": result.quarantine_version,
        "rows_source": result.rows_source,
        "rows_written": result.rows_written,
        "rows_quarantined": result.rows_quarantined,
        "storage_options": cfg.storage_options(cfg.trips_uri),
        **changes,
    }
    checks = verify_month_checks(key, **args)
    assert [c.check for c in checks] == list(CHECK_NAMES)
    return {c.check: c for c in checks}


def failed(checks: dict[str, CheckResult]) -> list[str]:
    return [name for name, c in checks.items() if not c.passed]


def write_partition(uri: str, data: pa.Table, month: str) -> int:
    """Commit ``data`` as partition ``month`` exactly as the pipeline's writer does, bypassing the cleaning."""
    data = data.set_column(data.schema.get_field_index("month"), "month", pa.array([month] * data.num_rows))
    record = MaterializationRecord(partition=month, status="success", run_id="test", code_version="t")
    return overwrite_partition(uri, data, column="month", record=record, schema=trips_schema())


def clean_rows(cfg: Settings) -> pa.Table:
    return DeltaTable(cfg.trips_uri).to_pyarrow_table(filters=[("month", "=", MONTH)])


def test_every_check_passes_on_a_real_run_and_is_returned_to_the_step(month):
    cfg, result = month
    assert [c["check"] for c in result.checks] == list(CHECK_NAMES)  # what steps.run_month got
    by_digest = next(c for c in result.checks if c["check"] == "no_duplicates_introduced")
    streamed = RowsDigest.from_text(result.rows_digest)
    assert streamed is not None
    assert streamed.rows == result.rows_written
    assert by_digest["passed"]
    assert by_digest["expected"] == f"{streamed.rows} rows, digest {streamed.short} (the rows the run streamed)"
    assert by_digest["observed"] == f"{streamed.rows} rows, digest {streamed.short}"
    checks = checks_of(cfg, result, source_uri=f"{cfg.source}/fhvhv_tripdata_{MONTH}.parquet")
    assert failed(checks) == []
    assert checks["no_duplicates_introduced"].expected == "<= 0 (in the source file)"
    assert checks["row_count"].observed == str(result.rows_written)


@pytest.mark.parametrize(
    ("expectation", "delta", "check"),
    [
        ("rows_written", 1, "row_count"),
        ("rows_quarantined", -1, "quarantine_row_count"),
        ("rows_source", 2, "rows_conserved"),
    ],
)
def test_a_corrupted_expectation_fails_its_check_with_a_clear_message(month, expectation, delta, check):
    cfg, result = month
    wrong = getattr(result, expectation) + delta
    checks = checks_of(cfg, result, **{expectation: wrong})
    assert failed(checks) == [check]
    bad = checks[check]
    message = str(CheckFailed(bad.partition, bad.check, bad.observed, bad.expected))  # as steps.run_month raises
    assert message.startswith(f"{MONTH}: check '{check}' failed: observed ")
    assert f"expected {wrong};" in message
    assert "planned stale" in message


def test_rows_filed_under_another_month_fail_month_matches_key(month, tmp_path):
    cfg, result = month
    uri = str(tmp_path / "trips")
    version = write_partition(uri, clean_rows(cfg), "2019-04")  # February pickups filed as April
    checks = checks_of(
        cfg,
        result,
        month="2019-04",
        trips_uri=uri,
        trips_version=version,
        rows_quarantined=0,
        rows_source=result.rows_written,
    )
    assert failed(checks) == ["month_matches_key"]
    assert checks["month_matches_key"].observed == f"{result.rows_written} trips outside the month"
    first, last = datetime(2019, 4, 1) - PICKUP_TOLERANCE, datetime(2019, 5, 1) + PICKUP_TOLERANCE
    window = f"0 (pickups from {first:%Y-%m-%d %H:%M} to before {last:%Y-%m-%d %H:%M})"
    assert checks["month_matches_key"].expected == window


def test_duplicates_introduced_by_a_write_fail_unless_the_source_had_them(month, tmp_path):
    cfg, result = month
    rows = clean_rows(cfg)
    doubled = pa.concat_tables([rows, rows.slice(0, 5)])
    uri = str(tmp_path / "trips")
    version = write_partition(uri, doubled, MONTH)
    counts = {"rows_written": doubled.num_rows, "rows_source": doubled.num_rows + result.rows_quarantined}
    source = f"{cfg.source}/fhvhv_tripdata_{MONTH}.parquet"
    checks = checks_of(cfg, result, trips_uri=uri, trips_version=version, source_uri=source, **counts)
    assert failed(checks) == ["no_duplicates_introduced"]
    assert checks["no_duplicates_introduced"].observed == "5 duplicate rows"
    assert checks["no_duplicates_introduced"].expected == "<= 0 (in the source file)"

    same_in_source = tmp_path / "source_with_duplicates.parquet"
    pq.write_table(doubled.drop_columns(["month"]), same_in_source)
    checks = checks_of(cfg, result, trips_uri=uri, trips_version=version, source_uri=str(same_in_source), **counts)
    assert failed(checks) == []
    without_source = checks_of(cfg, result, trips_uri=uri, trips_version=version, **counts)
    assert without_source["no_duplicates_introduced"].expected.startswith("<= 0 (spec:")
    assert not without_source["no_duplicates_introduced"].passed


def streamed(result: MonthResult) -> RowsDigest:
    digest = RowsDigest.from_text(result.rows_digest)
    assert digest is not None
    return digest


def duplicated(rows: pa.Table) -> pa.Table:
    return pa.concat_tables([rows, rows.slice(0, 5)])  # a writer wrote five rows twice


def lost_and_duplicated(rows: pa.Table) -> pa.Table:
    return pa.concat_tables([rows.slice(1), rows.slice(1, 1)])  # row 0 lost, row 1 twice: the counts still match


def altered(rows: pa.Table) -> pa.Table:
    """Another trip in row 0's place: its fare differs (an identity column, :data:`digest.IDENTITY`)."""
    fares = rows.column("base_passenger_fare").to_pylist()
    fares[0] = fares[0] + 0.01
    index = rows.schema.get_field_index("base_passenger_fare")
    return rows.set_column(index, "base_passenger_fare", pa.array(fares, pa.float64()))


@pytest.mark.parametrize(
    ("change", "observed"),
    [
        (duplicated, "rows differ from those streamed: 5 duplicate rows, source has 0"),
        (lost_and_duplicated, "rows differ from those streamed: 1 duplicate row, source has 0"),
        (altered, "rows differ from those streamed: 0 duplicate rows, source has 0"),
    ],
    ids=["duplicated", "lost_and_duplicated", "altered"],
)
def test_rows_that_differ_from_the_stream_fail_no_duplicates_introduced_saying_how(month, tmp_path, change, observed):
    cfg, result = month
    rows = change(clean_rows(cfg))
    uri = str(tmp_path / "trips")
    version = write_partition(uri, rows, MONTH)
    counts = {"rows_written": rows.num_rows, "rows_source": rows.num_rows + result.rows_quarantined}
    source = f"{cfg.source}/fhvhv_tripdata_{MONTH}.parquet"
    digest = streamed(result)
    checks = checks_of(cfg, result, trips_uri=uri, trips_version=version, source_uri=source, digest=digest, **counts)
    assert failed(checks) == ["no_duplicates_introduced"]
    bad = checks["no_duplicates_introduced"]
    assert bad.observed.startswith(f"{observed} ({rows.num_rows} rows, digest ")
    assert bad.expected == f"{result.rows_written} rows, digest {digest.short} (the rows the run streamed)"
    message = str(CheckFailed(bad.partition, bad.check, bad.observed, bad.expected))
    assert f"check 'no_duplicates_introduced' failed: observed {observed}" in message

    without_source = checks_of(cfg, result, trips_uri=uri, trips_version=version, digest=digest, **counts)
    assert without_source["no_duplicates_introduced"].observed.startswith(observed.removesuffix(", source has 0"))
    assert "source has" not in without_source["no_duplicates_introduced"].observed


def test_a_digest_of_another_duckdb_version_falls_back_on_counting_duplicates(month):
    cfg, result = month
    foreign = RowsDigest(result.rows_written, 1, method="duckdb-0.0.1-hash-sum")
    checks = checks_of(cfg, result, digest=foreign)
    assert failed(checks) == []
    assert checks["no_duplicates_introduced"].expected.startswith("<= 0 (spec:")


def test_a_source_with_its_own_duplicates_passes_and_the_fast_path_never_reads_the_source(tmp_path):
    cfg = local_settings(tmp_path)
    made = write_month_file(cfg.source, MONTH, 2_000, seed=4, anomalies="clean", extra={"exact_duplicate": 0.02})
    source = plan_months(cfg).listing.files[MONTH]
    run_id = new_run_id()
    result = materialize_month(source, cfg, run_id=run_id)
    with duckdb_connect(cfg.sink) as con:
        (dups,) = con.execute("SELECT count(*) - count(DISTINCT t) FROM (SELECT * FROM trips) t").fetchone()
    assert dups > 0  # the written month holds the source's own duplicates

    Path(made.uri).unlink()  # a digest that matches needs no source file
    checks = {c.check: c for c in verify_month(result, source, cfg, run_id=run_id)}
    assert all(c.passed for c in checks.values())
    assert checks["no_duplicates_introduced"].expected.endswith("(the rows the run streamed)")


def commit_one_file(uri: str, data: pa.Table, month: str, file_schema: pa.Schema) -> tuple[pq.FileMetaData, int]:
    """Commit ``data`` as partition ``month`` in one file our writer writes with ``file_schema``: its footer, the
    table version."""
    record = MaterializationRecord(partition=month, status="success", run_id="test", code_version="t")
    series = FileSeries(uri, "month", month, file_schema)
    series.write_group(data.drop_columns(["month"]).cast(file_schema))
    adds = series.close()
    footer = pq.read_metadata(f"{uri}/{adds[0].path}")
    return footer, commit_files(uri, adds, column="month", record=record, schema=trips_schema())


def write_without_null_counts(uri: str, data: pa.Table, month: str) -> int:
    """Commit ``data`` as partition ``month`` in a file whose footer has no statistics (another writer's file)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_write, "writer_options", lambda schema: {"write_statistics": False})
        footer, version = commit_one_file(uri, data, month, data_schema(trips_schema(), "month"))
    assert footer.row_group(0).column(0).statistics is None
    return version


def write_as_the_pipeline(uri: str, data: pa.Table, month: str) -> int:
    """Commit ``data`` through the pipeline's own file writer: text columns as dictionaries, without statistics."""
    footer, version = commit_one_file(uri, data, month, data_schema(trips_batch_schema(), "month"))
    chunk = footer.row_group(0)
    by_name = {chunk.column(i).path_in_schema: chunk.column(i) for i in range(chunk.num_columns)}
    assert by_name["dispatching_base_num"].statistics is None  # counted by the scan
    assert by_name["pickup_datetime"].statistics.null_count is not None  # counted from the footer
    return version


@pytest.mark.parametrize("column", ["pickup_datetime", "dispatching_base_num"])
@pytest.mark.parametrize("footers", ["every_column", "as_the_pipeline_writes", "none"])
def test_nulls_in_required_columns_fail_required_not_null(month, tmp_path, footers, column):
    """Counted from the footers for the columns whose every chunk has a null count, in the scan for the others
    (all of them for another writer's files without statistics): the same result either way."""
    cfg, result = month
    rows = clean_rows(cfg)
    holes = pa.array([i < 3 for i in range(rows.num_rows)])
    values = rows.column(column)
    rows = rows.set_column(
        rows.schema.get_field_index(column), column, pc.if_else(holes, pa.scalar(None, values.type), values)
    )
    uri = str(tmp_path / "trips")
    write = {
        "every_column": write_partition,
        "as_the_pipeline_writes": write_as_the_pipeline,
        "none": write_without_null_counts,
    }[footers]
    version = write(uri, rows, MONTH)
    con = open_connection()
    try:
        from_footers = verify._required_nulls_in_footers(con, uri, version, MONTH, None)
    finally:
        con.close()
    text = {"hvfhs_license_num", "dispatching_base_num"}
    expected_from_footers = {
        "every_column": set(REQUIRED),
        "as_the_pipeline_writes": set(REQUIRED) - text,
        "none": set(),
    }[footers]
    assert set(from_footers) == expected_from_footers
    assert sum(from_footers.values()) == (3 if column in from_footers else 0)
    checks = checks_of(cfg, result, trips_uri=uri, trips_version=version)
    assert failed(checks) == ["required_not_null"]
    assert checks["required_not_null"].observed == f"nulls: {column} 3"


def test_checks_read_the_committed_version_not_the_newest(month, tmp_path):
    cfg, result = month
    uri = str(tmp_path / "trips")
    rows = clean_rows(cfg)
    first = write_partition(uri, rows, MONTH)
    write_partition(uri, rows.slice(0, 10), MONTH)  # a later run replaced the month
    assert failed(checks_of(cfg, result, trips_uri=uri, trips_version=first)) == []


def test_record_checks_appends_and_concurrent_appends_all_land(month, tmp_path):
    _, result = month
    checks = [CheckResult(**c) for c in result.checks]
    uri = str(tmp_path / "warehouse" / "checks")

    def append(i: int) -> int:
        return record_checks(uri, [replace(c, run_id=f"run{i}") for c in checks])

    with ThreadPoolExecutor(max_workers=4) as pool:
        versions = list(pool.map(append, range(8)))
    assert sorted(versions) == list(range(1, 9))  # version 0 is the empty CREATE commit
    with duckdb_connect(str(tmp_path / "warehouse")) as con:
        assert con.execute("SELECT count(*), count(DISTINCT run_id) FROM checks").fetchone() == (8 * len(checks), 8)
        assert con.execute("SELECT bool_and(passed), min(checked_at) IS NOT NULL FROM checks").fetchone() == (
            True,
            True,
        )
    history = DeltaTable(uri).history()
    assert {h.get("checks.partitions") for h in history if h.get("operation") == "WRITE"} == {MONTH}
    assert record_checks(uri, []) == 8  # nothing to append: the current version, no commit


def test_checks_recorded_out_of_order_by_concurrent_runs_still_attest_the_write_in_place(tmp_path):
    """Run A commits, run B commits and records its checks, then A records its own: B's write stays verified."""
    cfg = local_settings(tmp_path)
    b = materialize(cfg, rows=200)
    (b_run,) = {c["run_id"] for c in b.checks}
    record_checks(cfg.checks_uri, [replace(CheckResult(**c), run_id="run-a-late") for c in b.checks])

    def state() -> tuple[str, str]:
        (row,) = [r for r in plan_months(cfg).rows if r.partition == MONTH]
        return str(row.state), row.reason

    assert state()[0] == "fresh"
    assert checks_recorded_by(cfg.checks_uri, MONTH, b_run)
    DeltaTable(cfg.checks_uri).delete(f"run_id = '{b_run}'")  # B's checks gone: only A's attest, not B's write
    assert not checks_recorded_by(cfg.checks_uri, MONTH, b_run)
    assert state() == ("failed", f"incomplete: run {b_run} committed it but recorded no verification")
    assert not checks_recorded_by(str(tmp_path / "nowhere"), MONTH, b_run)


def test_verify_and_record_on_s3_with_the_source_scanned_by_duckdb(s3_server, s3_bucket):
    cfg = s3_settings(s3_server, s3_bucket)
    result = materialize(cfg, rows=200)
    source = f"{cfg.source}/fhvhv_tripdata_{MONTH}.parquet"
    checks = checks_of(cfg, result, source_uri=source, source_storage_options=cfg.storage_options(source))
    assert failed(checks) == []
    assert checks["no_duplicates_introduced"].expected == "<= 0 (in the source file)"
    trips_opts = cfg.storage_options(cfg.trips_uri)
    con = open_connection(storage_options=trips_opts)
    try:  # the footers are read over S3 too (DuckDB httpfs with the run's keys), not only on local disk
        from_footers = verify._required_nulls_in_footers(con, cfg.trips_uri, result.trips_version, MONTH, trips_opts)
    finally:
        con.close()
    text = ("hvfhs_license_num", "dispatching_base_num")  # written without statistics: counted by the scan
    assert from_footers == {c: 0 for c in REQUIRED if c not in text}
    opts = cfg.storage_options(cfg.checks_uri)
    before = DeltaTable(cfg.checks_uri, storage_options=opts).to_pyarrow_table().num_rows  # run_month recorded its own
    assert before == len(CHECK_NAMES)
    batch = [replace(c, run_id="run-recorded-twice") for c in checks.values()]
    with ThreadPoolExecutor(max_workers=2) as pool:  # the same batch twice at once: a retry racing its original
        list(pool.map(lambda _: record_checks(cfg.checks_uri, batch, storage_options=opts), range(2)))
    after = DeltaTable(cfg.checks_uri, storage_options=opts).to_pyarrow_table().num_rows
    assert after == before + len(CHECK_NAMES), "one batch lands once, however often it is sent"


def test_a_partition_read_from_its_files_is_the_delta_read_of_that_version(tmp_path):
    cfg = local_settings(tmp_path)
    first = materialize(cfg, rows=300)
    second = materialize(cfg, rows=500)  # the month again: new files, the old ones superseded but still on disk
    assert len(data_files(cfg.trips_uri)) > len(DeltaTable(cfg.trips_uri).file_uris())
    con = open_connection()
    try:
        for result in (first, second):
            access = register_partition(
                con,
                "by_files",
                cfg.trips_uri,
                schema=trips_schema(),
                column="month",
                key=MONTH,
                version=result.trips_version,
            )
            register_table(con, "by_delta", cfg.trips_uri, schema=trips_schema(), version=result.trips_version)
            assert access == "files"
            by_files = con.execute("SELECT * FROM by_files ORDER BY ALL").fetch_arrow_table()
            by_delta = con.execute("SELECT * FROM by_delta ORDER BY ALL").fetch_arrow_table()
            assert by_files.num_rows == result.rows_written
            assert by_files.equals(by_delta.select(by_files.column_names))
        other = register_partition(
            con,
            "none",
            cfg.trips_uri,
            schema=trips_schema(),
            column="month",
            key="2019-03",
            version=second.trips_version,
        )
        assert other == "empty"
        assert con.execute("SELECT count(*) FROM none").fetchone() == (0,)
    finally:
        con.close()


def test_the_checks_load_httpfs_only_for_remote_uris():
    assert verify._extensions_for("/w/trips", "/w/quarantine", "/s/fhvhv_tripdata_2019-02.parquet") == ()
    assert verify._extensions_for("/w/trips", "/w/quarantine", None) == ()
    assert verify._extensions_for("s3://b/w/trips", "s3://b/w/quarantine", None) == ("httpfs",)
    assert verify._extensions_for("/w/trips", "/w/q", "https://example.org/fhvhv_tripdata_2019-02.parquet") == (
        "httpfs",
    )


def data_files(uri: str) -> list[Path]:
    return sorted(Path(uri).rglob("*.parquet"))
