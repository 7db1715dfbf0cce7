"""daily_summary: computed from the committed trips month, fresh until that month of trips is rewritten."""

from __future__ import annotations

import shutil
import threading
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable
from month_builders import valid_month, with_values, write_source

from partitions.records import MaterializationRecord
from partitions.staleness import PartitionState
from taxi_assets.assets import daily_summary
from taxi_assets.assets.daily_summary import materialize_daily_summary, plan_daily_summary, summary_uri
from taxi_assets.assets.trips import materialize_month, plan_months
from taxi_assets.errors import ConfigurationError
from taxi_assets.io.parquet_files import WriteLayout
from taxi_assets.io.sink import write_month
from taxi_assets.model import daily_aggregation
from taxi_assets.model.daily_aggregation import StreamSummary, summary_schema
from taxi_assets.settings import Settings

LAYOUT = WriteLayout(rows_per_group=2_000, groups_per_file=2)


def settings(tmp_path: Path) -> Settings:
    return Settings.resolve(source=str(tmp_path / "source"), sink=str(tmp_path / "sink"), env={})


def load_trips(cfg: Settings, month: str, table: pa.Table, run_id: str) -> None:
    source = write_source(Path(cfg.source), month, table)
    record = MaterializationRecord(partition=month, status="success", run_id=run_id, code_version="cv")
    write_month(source, cfg, record, now=lambda: "2026-11-24T00:00:00+00:00", layout=LAYOUT)


def states(cfg: Settings) -> dict[str, PartitionState]:
    return {row.partition: row.state for row in plan_daily_summary(cfg)}


def summary(cfg: Settings, month: str) -> pa.Table:
    dataset = DeltaTable(summary_uri(cfg)).to_pyarrow_dataset()
    return dataset.to_table(filter=ds.field("month") == month)


def test_a_month_is_summarized_by_day_company_and_borough_pair(tmp_path):
    cfg = settings(tmp_path)
    table = valid_month("2022-04", 3_000)
    table = with_values(
        table,
        {
            "hvfhs_license_num": {0: "HV0005", 1: "HV0009"},
            "PULocationID": {0: 132, 1: 1},  # JFK (Queens), Newark (EWR)
            "DOLocationID": {0: 265, 1: 264},  # outside NYC ("N/A"), unknown ("Unknown")
            "driver_pay": {2: -1.0},  # quarantined: not in trips, not in the summary
        },
    )
    load_trips(cfg, "2022-04", table, "trips-1")
    assert states(cfg) == {"2022-04": PartitionState.MISSING}
    version = materialize_daily_summary("2022-04", cfg, run_id="sum-1")
    rows = summary(cfg, "2022-04")
    assert version == 1
    assert rows.schema.names == summary_schema().names
    assert pc.sum(rows["trips"]).as_py() == 2_999
    clean = table.take([i for i in range(3_000) if i != 2])
    assert pc.sum(rows["fare"]).as_py() == pytest.approx(pc.sum(clean["base_passenger_fare"]).as_py())
    assert pc.sum(rows["tips"]).as_py() == pytest.approx(pc.sum(clean["tips"]).as_py())
    assert pc.sum(rows["miles"]).as_py() == pytest.approx(pc.sum(clean["trip_miles"]).as_py())
    assert set(rows["company"].to_pylist()) <= {"Uber", "Lyft", "HV0009"}
    assert "HV0009" in rows["company"].to_pylist()  # an unknown licence keeps its code
    pairs = set(
        zip(
            rows["company"].to_pylist(),
            rows["pickup_borough"].to_pylist(),
            rows["dropoff_borough"].to_pylist(),
            strict=True,
        )
    )
    assert ("Lyft", "Queens", "N/A") in pairs
    assert ("HV0009", "EWR", "Unknown") in pairs
    days = rows["day"].to_pylist()
    assert min(days).isoformat() >= "2022-04-01"
    assert max(days).isoformat() <= "2022-04-30"
    daily = rows.group_by("day").aggregate([("trips", "sum")])
    expected = pc.value_counts(pc.cast(clean["pickup_datetime"], pa.date32()))
    assert sorted(zip(daily["day"].to_pylist(), daily["trips_sum"].to_pylist(), strict=True)) == sorted(
        (d["values"], d["counts"]) for d in expected.to_pylist()
    )
    assert states(cfg) == {"2022-04": PartitionState.FRESH}


def test_rewriting_a_trips_month_makes_only_that_summary_month_stale(tmp_path):
    cfg = settings(tmp_path)
    load_trips(cfg, "2022-04", valid_month("2022-04", 1_000), "trips-1")
    load_trips(cfg, "2022-05", valid_month("2022-05", 1_000), "trips-1")
    for month in ("2022-04", "2022-05"):
        materialize_daily_summary(month, cfg, run_id="sum-1")
    assert set(states(cfg).values()) == {PartitionState.FRESH}
    load_trips(cfg, "2022-05", valid_month("2022-05", 1_200, seed=9), "trips-2")
    rows = {r.partition: r for r in plan_daily_summary(cfg)}
    assert rows["2022-04"].state is PartitionState.FRESH
    assert rows["2022-05"].state is PartitionState.SOURCE_CHANGED
    assert "trips-1" in rows["2022-05"].reason
    assert "trips-2" in rows["2022-05"].reason
    materialize_daily_summary("2022-05", cfg, run_id="sum-2")
    assert pc.sum(summary(cfg, "2022-05")["trips"]).as_py() == 1_200
    assert set(states(cfg).values()) == {PartitionState.FRESH}


def test_a_new_summary_version_replans_every_month(tmp_path, monkeypatch):
    cfg = settings(tmp_path)
    load_trips(cfg, "2022-04", valid_month("2022-04", 500), "trips-1")
    materialize_daily_summary("2022-04", cfg, run_id="sum-1")
    monkeypatch.setattr(daily_aggregation, "SUMMARY_VERSION", "daily-summary-test")
    assert states(cfg) == {"2022-04": PartitionState.CODE_CHANGED}


def test_summarizing_twice_keeps_one_copy_and_reads_the_recorded_trips_version(tmp_path):
    cfg = settings(tmp_path)
    load_trips(cfg, "2022-04", valid_month("2022-04", 800), "trips-1")
    first = materialize_daily_summary("2022-04", cfg, run_id="sum-1")
    second = materialize_daily_summary("2022-04", cfg, run_id="sum-2")
    assert second == first + 1
    assert pc.sum(summary(cfg, "2022-04")["trips"]).as_py() == 800
    log = DeltaTable(summary_uri(cfg)).history(1)[0]
    assert log["partitions.source_fingerprint"] == "trips-1"
    assert log["partitions.upstream"] == f"trips@{DeltaTable(cfg.trips_uri).version()}"


def test_a_month_without_trips_is_refused_with_the_next_step(tmp_path):
    cfg = settings(tmp_path)
    load_trips(cfg, "2022-04", valid_month("2022-04", 100), "trips-1")
    with pytest.raises(ConfigurationError, match="taxi-assets run --partitions 2022-06"):
        materialize_daily_summary("2022-06", cfg, run_id="sum-1")


def mixed_month(month: str, rows: int) -> pa.Table:
    """A month with quarantined rows, an unknown licence, unknown and outside-NYC zones, a zone not in the lookup."""
    return with_values(
        valid_month(month, rows),
        {
            "hvfhs_license_num": {0: "HV0009", 5: "HV0004"},
            "PULocationID": {1: 264, 2: 265},
            "DOLocationID": {3: 265, 4: 1},
            "driver_pay": {6: -1.0, 7: -2.0},  # quarantined: not in trips, not in the summary
            "pickup_datetime": {8: None, 9: datetime(2001, 1, 1)},  # quarantined, and outside any day range kept
        },
    )


def assert_same_summary(left: pa.Table, right: pa.Table) -> None:
    """Same keys and counts; sums equal up to the order of float additions (batches differ between builds)."""
    keys = ["day", "company", "pickup_borough", "dropoff_borough", "trips", "month"]
    assert left.select(keys).equals(right.select(keys))
    for column in ("fare", "tips", "miles"):
        assert left[column].to_pylist() == pytest.approx(right[column].to_pylist(), rel=1e-12)


def test_the_summary_summed_as_the_month_streams_equals_the_one_rebuilt_from_the_committed_month(tmp_path):
    cfg = settings(tmp_path)
    source = write_source(Path(cfg.source), "2022-04", mixed_month("2022-04", 5_000))
    record = MaterializationRecord(partition="2022-04", status="success", run_id="trips-1", code_version="cv")
    small_batches = WriteLayout(rows_per_group=300, groups_per_file=2)  # many batches, merged partials
    written = write_month(source, cfg, record, now=lambda: "2026-11-24T00:00:00+00:00", layout=small_batches)
    rebuilt = daily_summary.summarize(cfg.trips_uri, "2022-04", version=written.trips_version)
    assert written.summary.schema == summary_schema()
    assert pc.sum(written.summary["trips"]).as_py() == written.rows_written == 4_996
    assert_same_summary(written.summary, rebuilt)
    assert {"HV0009", "Via"} <= set(rebuilt["company"].to_pylist())


def test_many_batches_merge_into_the_summary_of_one(monkeypatch):
    month = valid_month("2022-04", 2_000).combine_chunks().to_batches()[0]
    keep = pa.array([i % 7 != 0 for i in range(2_000)])
    with StreamSummary("2022-04") as whole:
        whole.add(month, keep)
        expected = whole.result()
    monkeypatch.setattr(daily_aggregation, "MAX_PARTIALS", 3)  # merged every third batch
    with StreamSummary("2022-04") as pieces:
        for offset in range(0, 2_000, 100):
            pieces.add(month.slice(offset, 100), keep.slice(offset, 100))
        assert len(pieces._partials) < 3
        got = pieces.result()
    assert pieces.rows == whole.rows == sum(keep.to_pylist())
    assert_same_summary(got, expected)


def test_a_scan_that_fails_midway_raises_in_the_summary_and_leaves_no_thread_behind():
    batch = valid_month("2022-04", 10).to_batches()[0]

    def failing():
        yield batch
        raise OSError("connection reset while reading trips")

    reader = pa.RecordBatchReader.from_batches(batch.schema, failing())
    with pytest.raises(OSError, match="connection reset"):
        list(daily_summary._read_ahead(reader))
    endless = pa.RecordBatchReader.from_batches(batch.schema, (batch for _ in range(10_000)))
    ahead = daily_summary._read_ahead(endless, depth=2)
    assert next(ahead).num_rows == 10
    ahead.close()  # the consumer leaves early: the reading thread is stopped, not left blocked on a full queue
    assert not [t for t in threading.enumerate() if t.name == "daily-summary-scan"]


def test_a_month_task_commits_its_summary_after_trips_and_a_failed_summary_commit_fails_only_the_summary(tmp_path):
    cfg = settings(tmp_path)
    write_source(Path(cfg.source), "2022-04", mixed_month("2022-04", 1_000))
    plan = plan_months(cfg)
    result = materialize_month(plan.listing.files["2022-04"], cfg, run_id="run-1", code_version=plan.code_version)
    assert result.summary_version == 1  # the table created (v0), then the month (v1)
    assert result.summary_error == ""
    assert states(cfg) == {"2022-04": PartitionState.FRESH}
    log = DeltaTable(summary_uri(cfg)).history(1)[0]
    assert (log["partitions.source_fingerprint"], log["partitions.run_id"]) == ("run-1", "run-1")
    assert log["partitions.upstream"] == f"trips@{result.trips_version}"
    assert pc.sum(summary(cfg, "2022-04")["trips"]).as_py() == result.rows_written

    shutil.rmtree(summary_uri(cfg))
    Path(summary_uri(cfg)).write_text("not a table")  # the summary cannot be written
    again = materialize_month(plan.listing.files["2022-04"], cfg, run_id="run-2", code_version=plan.code_version)
    assert again.ok
    assert again.summary_version is None
    assert again.summary_error
    assert DeltaTable(cfg.trips_uri).history(1)[0]["partitions.run_id"] == "run-2"  # trips committed all the same
    Path(summary_uri(cfg)).unlink()
    assert states(cfg) == {"2022-04": PartitionState.MISSING}  # the run's daily-summary step rebuilds it


def test_edge_keys_and_nulls_are_summed_as_sql_would():
    """Null or unknown zones are 'Unknown', an unknown licence keeps its code, a group of null fares sums to null."""
    rows = [
        # pickup, licence, PU, DO, fare, tips, miles, keep
        (datetime(2022, 4, 1, 8), "HV0003", 132, 265, 10.0, 1.0, 2.0, True),
        (datetime(2022, 4, 1, 9), "HV0003", 132, 265, 5.5, None, 1.0, True),
        (datetime(2022, 4, 1, 9), "HV0003", 132, 265, 99.0, 9.0, 9.0, False),  # quarantined: not summed
        (datetime(2022, 4, 2, 0), "HV0009", None, 0, None, None, 3.0, True),  # no zone, zone 0: Unknown
        (datetime(2022, 4, 2, 1), "HV0009", 70_000, -5, None, 2.5, 4.0, True),  # IDs the lookup lacks
        (datetime(2022, 3, 31, 23), "HV0005", 1, 264, 7.0, 0.0, 1.5, True),  # the tolerance before the month
    ]
    columns = list(zip(*rows, strict=True))
    batch = pa.RecordBatch.from_pydict(
        {
            "pickup_datetime": pa.array(columns[0], pa.timestamp("us")),
            "hvfhs_license_num": pc.dictionary_encode(pa.array(columns[1])),
            "PULocationID": pa.array(columns[2], pa.int32()),
            "DOLocationID": pa.array(columns[3], pa.int32()),
            "base_passenger_fare": pa.array(columns[4], pa.float64()),
            "tips": pa.array(columns[5], pa.float64()),
            "trip_miles": pa.array(columns[6], pa.float64()),
        }
    )
    with StreamSummary("2022-04") as summed:
        summed.add(batch, pa.array(columns[7]))
        got = summed.result().to_pylist()
    assert summed.rows == 5
    by_key = {(r["day"].isoformat(), r["company"], r["pickup_borough"], r["dropoff_borough"]): r for r in got}
    assert set(by_key) == {
        ("2022-03-31", "Lyft", "EWR", "Unknown"),
        ("2022-04-01", "Uber", "Queens", "N/A"),
        ("2022-04-02", "HV0009", "Unknown", "Unknown"),
    }
    uber = by_key[("2022-04-01", "Uber", "Queens", "N/A")]
    assert (uber["trips"], uber["fare"], uber["tips"], uber["miles"]) == (2, 15.5, 1.0, 3.0)
    unknown = by_key[("2022-04-02", "HV0009", "Unknown", "Unknown")]
    assert (unknown["trips"], unknown["fare"], unknown["tips"], unknown["miles"]) == (2, None, 2.5, 7.0)
    assert all(r["month"] == "2022-04" for r in got)
    assert [r["day"] for r in got] == sorted(r["day"] for r in got)


def test_a_kept_row_without_pickup_is_refused_and_a_dropped_one_is_ignored():
    batch = valid_month("2022-04", 4).combine_chunks().to_batches()[0]
    pickups = batch.column("pickup_datetime").to_pylist()
    batch = batch.set_column(
        batch.schema.get_field_index("pickup_datetime"),
        "pickup_datetime",
        pa.array([None, *pickups[1:]], batch.schema.field("pickup_datetime").type),
    )
    with StreamSummary("2022-04") as summed:
        summed.add(batch, pa.array([False, True, True, True]))
        assert summed.rows == 3
        with pytest.raises(ValueError, match="without pickup_datetime"):
            summed.add(batch, pa.array([True, True, True, True]))
