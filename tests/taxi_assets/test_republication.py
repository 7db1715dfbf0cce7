"""Issue 15.4: a month rebuilt because its source was re-published keeps what changed in its success record,
and ``status`` shows it. Real source files, real Delta tables, real DuckDB, the real CLI in this process."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from partitions.delta_log import read_records
from partitions.listing import filesystem_for
from partitions.records import MaterializationRecord
from taxi_assets.analysts.audit import audit_republications
from taxi_assets.analysts.health import publication_history
from taxi_assets.checks.republication import (
    PREFIX,
    SOURCE_COLUMNS,
    Audit,
    column_changes,
    is_republication,
    parse_source_columns,
)
from taxi_assets.cli.main import main
from taxi_assets.model.daily_aggregation import COMPANIES
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file

MONTH = "2019-03"


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    source, sink = tmp_path / "source", tmp_path / "warehouse"
    monkeypatch.setenv("TAXI_ASSETS_SOURCE", str(source))
    monkeypatch.setenv("TAXI_ASSETS_SINK", str(sink))
    return source, sink


def materialize() -> None:
    assert main(["materialize", "--partition", MONTH]) == 0


def status(capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    return row


def newest_success(sink: Path) -> MaterializationRecord:
    record = read_records(str(sink / "trips"))[MONTH].latest_success
    assert record is not None
    return record


def trips_by_company(sink: Path) -> Counter[str]:
    table = DeltaTable(str(sink / "trips")).to_pyarrow_table(filters=[("month", "=", MONTH)])
    return Counter(COMPANIES.get(k, k) for k in table.column("hvfhs_license_num").to_pylist())


def republish_with_more_trips(source: Path, tmp_path: Path) -> None:
    """The same file with 150 more trips appended and one more column: what a TLC re-publication looks like."""
    path = source / f"fhvhv_tripdata_{MONTH}.parquet"
    first = pq.read_table(path)
    write_month_file(str(tmp_path / "more"), MONTH, 150, seed=2)
    more = pq.read_table(tmp_path / "more" / path.name).cast(first.schema)
    both = pa.concat_tables([first, more])
    pq.write_table(both.append_column("survey_flag", pa.array(["N"] * both.num_rows)), path)


def test_a_republished_month_keeps_what_changed_and_status_shows_it(dirs, tmp_path, capsys):
    source, sink = dirs
    write_month_file(str(source), MONTH, 600, seed=1)
    materialize()
    first = newest_success(sink)
    before = trips_by_company(sink)
    assert not any(k.startswith(PREFIX) for k in first.extra)  # a first build is no re-publication
    assert status(capsys)["republished"] is None

    republish_with_more_trips(source, tmp_path)
    pending = status(capsys)
    assert pending["state"] == "source-changed"  # the delta is not known before the run
    assert pending["republished"] is None
    assert "re-published" not in pending["reason"]
    materialize()

    record = newest_success(sink)
    after = trips_by_company(sink)
    delta = record.rows_written - first.rows_written
    assert delta > 100  # 150 trips appended, a few of them quarantined
    audit = Audit.from_extra(record.extra)
    assert audit is not None
    assert (audit.rows_before, audit.rows_after) == (first.rows_written, record.rows_written)
    assert audit.from_version == first.version
    assert (audit.trips_new, audit.trips_gone) == (delta, 0)  # only appended: every old trip is still there
    expected = ", ".join(f"{name} {after[name] - before[name]:+,}" for name in sorted(after, key=_licence))
    assert audit.by_company == expected
    assert audit.columns == "source +survey_flag"
    assert parse_source_columns(record.extra[SOURCE_COLUMNS])["survey_flag"] == "string"

    shown = status(capsys)
    assert shown["state"] == "fresh"
    assert shown["republished"]["row_delta"] == delta
    assert shown["republished"]["trips_gone"] == 0
    assert shown["republished"]["trips_new_pct"] == round(100 * delta / record.rows_written, 2)
    assert shown["reason"].endswith(f"; {audit.summary()}")
    assert f"re-published: +{delta} rows (" in shown["reason"]
    assert "columns source +survey_flag" in shown["reason"]

    capsys.readouterr()
    assert main(["status"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"re-published: +{delta} rows" in text

    # A forced rebuild of the same bytes is no re-publication: its success keeps no audit, status shows none.
    materialize()
    rerun = newest_success(sink)
    assert rerun.version is not None
    assert record.version is not None
    assert rerun.version > record.version
    assert not any(k.startswith(PREFIX) for k in rerun.extra)
    again = status(capsys)
    assert again["republished"] is None
    assert "re-published" not in again["reason"]

    # The report reads the recorded audit instead of time travel; the re-run has none, so it is compared.
    history = publication_history(str(sink / "trips"))
    republished, rerun_row = audit_republications(str(sink / "trips"), history)
    assert republished["audit"] == "recorded"
    assert republished["versions"] == f"{first.version} -> {record.version}"
    assert (republished["row delta"], republished["gone trips"]) == (delta, 0)
    assert republished["columns"] == "source +survey_flag"
    assert rerun_row["audit"] == "time travel"
    assert (rerun_row["row delta"], rerun_row["new trips"], rerun_row["gone trips"]) == (0, 0, 0)
    assert rerun_row["columns"] == "same columns"  # the record kept the extra column, and so did the re-run's


def test_an_audit_that_fails_leaves_the_month_written_without_one(dirs, tmp_path, capsys, caplog):
    source, sink = dirs
    write_month_file(str(source), MONTH, 300, seed=1)
    materialize()
    month_dir = sink / "trips" / f"month={MONTH}"
    shutil.rmtree(month_dir)  # the previous version's files are gone: the audit cannot read the old side
    month_dir.mkdir()
    republish_with_more_trips(source, tmp_path)
    with caplog.at_level(logging.WARNING, logger="taxi_assets.assets.trips"):
        materialize()
    assert f"{MONTH}: re-publication audit skipped" in caplog.text
    record = newest_success(sink)
    assert record.rows_source == 450
    assert not any(k.startswith(PREFIX) for k in record.extra)
    assert status(capsys)["republished"] is None


def test_a_republication_on_s3_is_audited_through_the_store(s3_env, s3_bucket, tmp_path, monkeypatch):
    """The new files are read back from the store before the commit (httpfs, the S3 secret from AWS_*)."""
    cfg = Settings.resolve(source=f"s3://{s3_bucket}/source", sink=f"s3://{s3_bucket}/warehouse")
    monkeypatch.setenv("TAXI_ASSETS_SOURCE", cfg.source)
    monkeypatch.setenv("TAXI_ASSETS_SINK", cfg.sink)
    local = tmp_path / "source"
    write_month_file(str(local), MONTH, 300, seed=1)
    name = f"fhvhv_tripdata_{MONTH}.parquet"
    fs, root = filesystem_for(cfg.source, cfg.storage_options(cfg.source))
    opts = cfg.storage_options(cfg.trips_uri)
    pq.write_table(pq.read_table(local / name), f"{root}/{name}", filesystem=fs)
    materialize()
    first = read_records(cfg.trips_uri, storage_options=opts)[MONTH].latest_success
    republish_with_more_trips(local, tmp_path)
    pq.write_table(pq.read_table(local / name), f"{root}/{name}", filesystem=fs)
    materialize()
    record = read_records(cfg.trips_uri, storage_options=opts)[MONTH].latest_success
    assert first is not None
    assert record is not None
    audit = Audit.from_extra(record.extra)
    assert audit is not None, record.extra
    assert (audit.rows_before, audit.rows_after) == (first.rows_written, record.rows_written)
    assert (audit.trips_new, audit.trips_gone) == (record.rows_written - first.rows_written, 0)
    assert audit.columns == "source +survey_flag"


def test_only_other_source_bytes_make_a_republication():
    def success(fingerprint: str) -> MaterializationRecord:
        return MaterializationRecord(MONTH, "success", run_id="r", code_version="c", source_fingerprint=fingerprint)

    assert is_republication(success("a"), "b")
    assert not is_republication(success("a"), "a")  # a forced re-run or a code change
    assert not is_republication(None, "b")  # a first build
    assert not is_republication(success(""), "b")  # an old record without a fingerprint: nothing to compare


def test_column_changes_name_added_removed_and_retyped_columns():
    before = {"a": "int64", "b": "string", "c": "double"}
    after = {"a": "int32", "c": "double", "d": "string"}
    assert column_changes(before, after, label="source") == "source +d, source -b, source a: int64 -> int32"
    assert column_changes({"x": ""}, {"x": "int64"}) == "same columns"  # a type known on one side only
    audit = Audit(3, rows_before=1000, rows_after=1500, by_company="Uber +400, Lyft +100", columns="same columns",
                  trips_new=500, trips_gone=0)  # fmt: skip
    assert Audit.from_extra(audit.to_extra()) == audit
    assert audit.summary() == "re-published: +500 rows (Uber +400, Lyft +100), trips new 33.3 % / gone 0 %"


def _licence(name: str) -> str:
    return {v: k for k, v in COMPANIES.items()}.get(name, name)


def test_every_build_keeps_its_source_columns_so_a_later_retype_is_named(dirs, tmp_path):
    """The first build records the file's columns too (from the reader's footer), so a re-publication that only
    changes a column's type is told apart from one that adds or drops columns."""
    source, sink = dirs
    write_month_file(str(source), MONTH, 400, seed=1)
    materialize()
    first = newest_success(sink)
    path = source / f"fhvhv_tripdata_{MONTH}.parquet"
    assert parse_source_columns(first.extra[SOURCE_COLUMNS]) == {f.name: str(f.type) for f in pq.read_schema(path)}

    table = pq.read_table(path)
    i = table.schema.get_field_index("trip_miles")
    pq.write_table(table.set_column(i, "trip_miles", table.column("trip_miles").cast(pa.float32())), path)
    materialize()
    audit = Audit.from_extra(newest_success(sink).extra)
    assert audit is not None
    assert "trip_miles" in audit.columns
    assert "float" in audit.columns  # the new type is named
