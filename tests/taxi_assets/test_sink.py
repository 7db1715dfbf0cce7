"""One month into real Delta tables: streamed files, uniform row groups, one commit per table, nothing half-done."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from month_builders import valid_month, with_values, write_source

from partitions.delta_log import read_records
from partitions.overwrite import CommitStats
from partitions.records import MaterializationRecord
from taxi_assets.assets.daily_summary import commit_summary, summary_uri
from taxi_assets.checks.store import record_checks
from taxi_assets.checks.verify import verify_month_checks
from taxi_assets.errors import UnreadableSource
from taxi_assets.io import sink
from taxi_assets.io.parquet_files import WriteLayout
from taxi_assets.io.sink import write_month
from taxi_assets.io.writer_pool import GroupBuffer, PartitionWriter, Piece, materialize
from taxi_assets.model.schema import PARTITION_COLUMN, trips_schema
from taxi_assets.settings import Settings

SMALL = WriteLayout(rows_per_group=1_000, groups_per_file=3, lanes=2)
MONTH = "2022-09"


def settings(tmp_path: Path) -> Settings:
    return Settings.resolve(source=str(tmp_path / "source"), sink=str(tmp_path / "sink"), env={})


def record(month: str = MONTH, run_id: str = "run-1") -> MaterializationRecord:
    return MaterializationRecord(
        partition=month, status="success", run_id=run_id, code_version="cv", source_fingerprint="fp"
    )


def write(cfg: Settings, table: pa.Table, month: str = MONTH, *, run_id: str = "run-1", layout=SMALL):
    source = write_source(Path(cfg.source), month, table)
    return write_month(source, cfg, record(month, run_id), now=lambda: "2026-11-24T00:00:00+00:00", layout=layout)


def month_table(uri: str, month: str) -> pa.Table:
    return DeltaTable(uri).to_pyarrow_dataset().to_table(filter=ds.field(PARTITION_COLUMN) == month)


def data_files(uri: str) -> list[Path]:
    return sorted(Path(uri).rglob("*.parquet"))


def faulty_month(rows: int = 10_300) -> pa.Table:
    return with_values(valid_month(MONTH, rows), {"driver_pay": {7: -1.0, rows // 2: -2.0}, "trip_miles": {9: 0.0}})


def test_a_month_lands_in_both_tables_with_its_record(tmp_path):
    cfg = settings(tmp_path)
    written = write(cfg, faulty_month())
    assert (written.rows_source, written.rows_written, written.rows_quarantined) == (10_300, 10_297, 3)
    assert written.quarantined_by_rule == {"negative_driver_pay": 2, "non_positive_miles": 1}
    assert (written.trips_version, written.quarantine_version) == (1, 1)  # CREATE, then the month
    trips = month_table(cfg.trips_uri, MONTH)
    assert trips.num_rows == 10_297
    assert trips.schema.field("pickup_datetime").type == pa.timestamp("us")
    quarantined = month_table(cfg.quarantine_uri, MONTH)
    assert sorted(quarantined["source_row"].to_pylist()) == [7, 9, 5_150]
    trips_record = read_records(cfg.trips_uri)[MONTH].latest_success
    q_record = read_records(cfg.quarantine_uri)[MONTH].latest_success
    assert (trips_record.run_id, q_record.run_id) == ("run-1", "run-1")
    assert (trips_record.rows_source, trips_record.rows_written, trips_record.rows_quarantined) == (10_300, 10_297, 3)
    assert q_record.rows_written == 3


def test_quarantine_is_committed_before_trips(tmp_path):
    cfg = settings(tmp_path)
    write(cfg, faulty_month(2_000))
    q_time = DeltaTable(cfg.quarantine_uri).history(1)[0]["timestamp"]
    t_time = DeltaTable(cfg.trips_uri).history(1)[0]["timestamp"]
    assert q_time <= t_time


def test_files_follow_the_delta_layout_with_uniform_row_groups_and_bounded_size(tmp_path):
    cfg = settings(tmp_path)
    written = write(cfg, valid_month(MONTH, 10_300))
    files = data_files(cfg.trips_uri)
    # 11 groups (10 full + 300 rows) dealt to 2 lanes of at most 3 groups per file: 6 + 5 groups -> 4 files
    assert written.trips_files == len(files) == 4
    assert all(f.parent.name == f"month={MONTH}" and f.name.endswith("-c000.snappy.parquet") for f in files)
    groups = sorted(
        pq.ParquetFile(f).metadata.row_group(g).num_rows for f in files for g in range(pq.ParquetFile(f).num_row_groups)
    )
    assert groups == [300] + [1_000] * 10
    assert max(pq.ParquetFile(f).num_row_groups for f in files) == 3
    assert PARTITION_COLUMN not in pq.read_schema(files[0]).names  # the key lives in the Delta log


def test_add_actions_carry_delta_statistics_that_readers_skip_with(tmp_path):
    cfg = settings(tmp_path)
    write(cfg, valid_month(MONTH, 6_000), layout=WriteLayout(rows_per_group=1_000, groups_per_file=1, lanes=2))
    actions = pa.table(DeltaTable(cfg.trips_uri).get_add_actions(flatten=True))
    assert sum(actions["num_records"].to_pylist()) == 6_000
    assert "min.pickup_datetime" in actions.column_names
    firsts = sorted(actions["min.pickup_datetime"].to_pylist())
    dataset = DeltaTable(cfg.trips_uri).to_pyarrow_dataset()
    late = dataset.to_table(filter=ds.field("pickup_datetime") >= pa.scalar(firsts[-1], pa.timestamp("us")))
    expected = pc.sum(
        pc.greater_equal(month_table(cfg.trips_uri, MONTH)["pickup_datetime"], firsts[-1]).cast(pa.int64())
    )
    assert late.num_rows == expected.as_py()


def test_writing_a_month_again_replaces_it_and_leaves_other_months_alone(tmp_path):
    cfg = settings(tmp_path)
    write(cfg, valid_month("2022-08", 1_500), "2022-08")
    write(cfg, faulty_month(2_500), run_id="run-1")
    second = write(cfg, faulty_month(3_500), run_id="run-2")
    assert month_table(cfg.trips_uri, MONTH).num_rows == second.rows_written == 3_497
    assert month_table(cfg.quarantine_uri, MONTH).num_rows == 3
    assert month_table(cfg.trips_uri, "2022-08").num_rows == 1_500
    assert read_records(cfg.trips_uri)[MONTH].latest_success.run_id == "run-2"


def test_a_clean_month_commits_an_empty_quarantine_that_replaces_an_old_one(tmp_path):
    cfg = settings(tmp_path)
    write(cfg, faulty_month(2_000), run_id="run-1")
    written = write(cfg, valid_month(MONTH, 2_000), run_id="run-2")
    assert (written.rows_quarantined, written.quarantine_files) == (0, 0)
    assert month_table(cfg.quarantine_uri, MONTH).num_rows == 0
    assert read_records(cfg.quarantine_uri)[MONTH].latest_success.run_id == "run-2"


def test_a_month_whose_every_row_breaks_a_rule_has_no_trips_files(tmp_path):
    cfg = settings(tmp_path)
    table = valid_month(MONTH, 500)
    table = table.set_column(table.schema.get_field_index("driver_pay"), "driver_pay", pa.array([-1.0] * 500))
    written = write(cfg, table)
    assert (written.rows_written, written.rows_quarantined, written.trips_files) == (0, 500, 0)
    assert month_table(cfg.trips_uri, MONTH).num_rows == 0


def test_an_error_while_streaming_commits_nothing_and_deletes_the_files_it_started(tmp_path):
    cfg = settings(tmp_path)
    write(cfg, valid_month(MONTH, 2_000), run_id="run-1")
    before = (DeltaTable(cfg.trips_uri).version(), DeltaTable(cfg.quarantine_uri).version())
    kept = data_files(cfg.sink)
    source = write_source(Path(cfg.source), MONTH, valid_month(MONTH, 20_000), row_group_size=5_000)
    raw = bytearray(Path(source.uri).read_bytes())
    start = pq.ParquetFile(source.uri).metadata.row_group(3).column(9).data_page_offset
    raw[start : start + 4_000] = b"\xff" * 4_000
    Path(source.uri).write_bytes(bytes(raw))
    with pytest.raises(UnreadableSource):
        write_month(source, cfg, record(run_id="run-2"), now=lambda: "t", layout=SMALL)
    assert (DeltaTable(cfg.trips_uri).version(), DeltaTable(cfg.quarantine_uri).version()) == before
    assert data_files(cfg.sink) == kept
    assert month_table(cfg.trips_uri, MONTH).num_rows == 2_000


def test_files_of_a_run_that_died_before_its_commit_are_invisible_and_vacuumed(tmp_path):
    cfg = settings(tmp_path)
    write(cfg, valid_month(MONTH, 2_000), run_id="run-1")
    version = DeltaTable(cfg.trips_uri).version()
    batch = valid_month(MONTH, 1_000)
    orphan = PartitionWriter(cfg.trips_uri, trips_schema(), column=PARTITION_COLUMN, key=MONTH, lanes=1)
    from taxi_assets.model.casts import conform, plan_columns

    plan = plan_columns(batch.schema, partition=MONTH, path="x")
    orphan.write(conform(batch.to_batches()[0], plan, partition=MONTH, path="x").batch)
    adds = orphan.finish()  # written, never committed: the process "dies" here
    assert len(adds) == 1
    assert DeltaTable(cfg.trips_uri).version() == version
    assert month_table(cfg.trips_uri, MONTH).num_rows == 2_000
    # A full vacuum (every file the log does not name), not the default "lite" one (only removed files)
    table = DeltaTable(cfg.trips_uri)
    listed = table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=True, full=True)
    assert [path for path in listed if adds[0].path in path]
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True)
    assert not (Path(cfg.trips_uri) / adds[0].path).exists()
    assert month_table(cfg.trips_uri, MONTH).num_rows == 2_000


def test_the_record_names_the_flags_made_null_and_the_columns_left_out(tmp_path):
    cfg = settings(tmp_path)
    table = valid_month(MONTH, 1_000).append_column("request_source", pa.array(["app"] * 1_000))
    written = write(cfg, table)
    assert written.extra_columns == ("request_source",)
    extra = read_records(cfg.trips_uri)[MONTH].latest_success.extra
    assert extra["fhvhv.extra_columns"] == "request_source"
    assert int(extra["fhvhv.flags_nulled"]) == written.flags_nulled > 0
    assert json.dumps(dict(extra))  # plain strings: any Delta reader shows them


def test_group_buffer_cuts_exact_groups_of_kept_rows_and_keeps_the_rest():
    schema = pa.schema([("x", pa.int64())])
    buffer = GroupBuffer(rows=4)
    groups = []
    for size, drop in ((3, None), (3, 1), (7, 5), (1, None)):
        batch = pa.record_batch([pa.array(range(size))], schema=schema)
        keep = None if drop is None else pa.array([i != drop for i in range(size)])
        groups += buffer.add(Piece.of(batch, keep))
    assert buffer.flush() == []
    tables = [materialize(group, schema) for group in groups]
    assert [t["x"].to_pylist() for t in tables] == [[0, 1, 2, 0], [2, 0, 1, 2], [3, 4, 6, 0]]
    # 12 kept rows of 14; the spill of a cut batch was copied, so groups share no buffer


@pytest.mark.parametrize("dropped", [3, 400])  # few: zero-copy slices; many: a filtered copy
def test_kept_rows_are_the_same_whether_sliced_or_filtered(dropped):
    schema = pa.schema([("x", pa.int64())])
    batch = pa.record_batch([pa.array(range(20_000))], schema=schema)
    drops = {7 + k * (20_000 // dropped) for k in range(dropped)}
    keep = pa.array([i not in drops for i in range(20_000)])
    piece = Piece.of(batch, keep)
    parts = piece.materialize()
    assert piece.rows == 20_000 - dropped
    assert len(parts) == (dropped + 1 if dropped == 3 else 1)
    assert pa.Table.from_batches(parts)["x"].to_pylist() == [i for i in range(20_000) if keep[i].as_py()]


def test_strings_from_many_source_dictionaries_land_as_plain_strings(tmp_path):
    cfg = settings(tmp_path)
    table = valid_month(MONTH, 6_000)
    source = write_source(Path(cfg.source), MONTH, table, row_group_size=700)  # a dictionary per 700 rows
    write_month(source, cfg, record(), now=lambda: "t", layout=SMALL)
    files = data_files(cfg.trips_uri)
    assert pq.read_schema(files[0]).field("dispatching_base_num").type == pa.string()
    got = month_table(cfg.trips_uri, MONTH).sort_by(
        [("request_datetime", "ascending"), ("pickup_datetime", "ascending")]
    )
    assert got.schema.field("dispatching_base_num").type == pa.string()
    assert got["dispatching_base_num"].to_pylist() == table["dispatching_base_num"].to_pylist()
    assert got["originating_base_num"].to_pylist() == table["originating_base_num"].to_pylist()
    actions = pa.table(DeltaTable(cfg.trips_uri).get_add_actions(flatten=True))
    # Text columns carry no statistics (their bounds prune nothing and cost 15 % of the encoding); the rest do.
    assert actions["min.hvfhs_license_num"].null_count == actions.num_rows
    assert all(v is not None for v in actions["min.pickup_datetime"].to_pylist())
    assert all(v is not None for v in actions["max.driver_pay"].to_pylist())


def test_eight_months_committing_to_the_four_tables_at_once_all_land_and_count_their_retries(tmp_path, monkeypatch):
    """Eight month tasks on one sink (issue 16.3): quarantine, trips, daily_summary and checks each take eight
    commits at once; every month lands in every table, none fails for contention, and the retries are counted.

    The threads meet at a barrier before their first commit (the quarantine one), so the eight commits are
    built on one snapshot: the race is certain rather than left to the scheduler. The commits are the real ones.
    """
    cfg = settings(tmp_path)
    months = [f"2023-{m:02d}" for m in range(1, 9)]
    sources = {m: write_source(Path(cfg.source), m, valid_month(m, 1_500 + 100 * i)) for i, m in enumerate(months)}
    first_commit = threading.Barrier(len(months))
    real_commit_files = sink.commit_files
    met: set[str] = set()

    def commit_after_everyone(uri, adds, **kwargs):
        if uri == cfg.quarantine_uri:
            met.add(kwargs["record"].partition)
            first_commit.wait(timeout=120)
        return real_commit_files(uri, adds, **kwargs)

    monkeypatch.setattr(sink, "commit_files", commit_after_everyone)
    results: dict[str, tuple[sink.Written, int, int, CommitStats]] = {}
    errors: dict[str, BaseException] = {}

    def month_task(month: str) -> None:
        try:
            run_id = f"run-{month}"
            written = write_month(sources[month], cfg, record(month, run_id), now=lambda: "2026-11-24T00:00:00+00:00")
            summary_version = commit_summary(
                cfg,
                written.summary,
                month=month,
                run_id=run_id,
                upstream_run_id=run_id,
                upstream_version=written.trips_version,
                upstream_rows=written.rows_written,
            )
            checks = verify_month_checks(
                month,
                run_id=run_id,
                trips_uri=cfg.trips_uri,
                trips_version=written.trips_version,
                quarantine_uri=cfg.quarantine_uri,
                quarantine_version=written.quarantine_version,
                rows_source=written.rows_source,
                rows_written=written.rows_written,
                rows_quarantined=written.rows_quarantined,
                digest=written.digest,
            )
            checks_stats = CommitStats()
            checks_version = record_checks(cfg.checks_uri, checks, stats=checks_stats)
            assert all(c.passed for c in checks), [c for c in checks if not c.passed]
            results[month] = (written, summary_version, checks_version, checks_stats)
        except BaseException as exc:  # reported below, per month
            errors[month] = exc

    threads = [threading.Thread(target=month_task, args=(m,)) for m in months]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == {}, "no month fails for contention"
    assert met == set(months)
    sink_stats, checks_stats = CommitStats(), CommitStats()
    for written, _, _, stats in results.values():
        sink_stats.merge(written.commits)
        checks_stats.merge(stats)
    assert sink_stats.commits == 16  # quarantine + trips of eight months
    assert checks_stats.commits == 8
    assert sink_stats.retries >= 1, f"eight quarantine commits from one snapshot: seven lost a race ({sink_stats})"
    assert sink_stats.rebased_over >= sink_stats.rebased >= 1
    trips_versions = sorted(w.trips_version for w, *_ in results.values())
    assert len(set(trips_versions)) == 8, "one trips version per month"
    assert len({v for _, _, v, _ in results.values()}) == 8, "one checks append per month"
    assert len({v for _, v, _, _ in results.values()}) == 8, "one daily_summary commit per month"
    for month, (written, *_) in results.items():
        assert month_table(cfg.trips_uri, month).num_rows == written.rows_written
        assert written.rows_written + written.rows_quarantined == sources_rows(sources[month].uri)
    summary = DeltaTable(summary_uri(cfg)).to_pyarrow_table()
    assert set(summary[PARTITION_COLUMN].to_pylist()) == set(months)
    checked = DeltaTable(cfg.checks_uri).to_pyarrow_table()
    assert sorted(set(checked["partition"].to_pylist())) == months


def sources_rows(path: str) -> int:
    return pq.ParquetFile(path).metadata.num_rows
