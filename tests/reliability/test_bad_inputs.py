"""Bad inputs by class, each on a generated file, end to end through ``run_month`` and ``taxi-assets status``.

A file that cannot be trusted is rejected whole with a named error (month, file, column, problem): nothing of it
is written (the month's files, rows and the quarantine version are unchanged, files already streamed are
deleted), one empty ``failed`` commit records the message, ``status --json`` shows it, the next run retries.
Drift that cannot change a value is cast and gives exactly the rows of the canonical file; unknown columns are
left out and named in the record. Bad rows are quarantined with their rule and reason, never dropped.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from reliability_cases import (
    MONTH,
    OTHER,
    ROWS,
    data_actions,
    local_settings,
    log,
    materialize,
    month_table,
    plan_states,
    published_month,
    rows_counter,
    snapshot,
    status,
    version,
    write_file,
)

from partitions.delta_log import read_records
from partitions.errors import DuplicatePartitionSource
from partitions.staleness import PartitionState
from taxi_assets.assets.trips import plan_months
from taxi_assets.cli.main import main as cli_main
from taxi_assets.errors import (
    MisfiledSource,
    SourceRejected,
    SourceSchemaMismatch,
    UnparseableTimestamp,
    UnreadableSource,
)
from taxi_assets.model.casts import conform, plan_columns
from taxi_assets.model.cleaning import RULES
from taxi_assets.model.schema import trips_schema
from taxi_assets.synth import write_month_file
from taxi_assets.synth.writer import TRUTH_DIR, file_name, truth_file_name

pytestmark = pytest.mark.usefixtures("small_batches")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MONTH and OTHER materialized once from their published files; tests work on copies."""
    root = tmp_path_factory.mktemp("baseline")
    cfg = local_settings(root)
    write_file(cfg.source, MONTH, published_month(MONTH))
    write_file(cfg.source, OTHER, published_month(OTHER, 300, seed=8))
    for month in (MONTH, OTHER):
        result = materialize(cfg, month)
        assert result.rows_quarantined > 0, "stress anomalies put rows in both tables"
    return root


@pytest.fixture
def workspace(baseline: Path, tmp_path: Path):
    shutil.copytree(baseline, tmp_path / "w")
    return local_settings(tmp_path / "w")


def with_column(
    table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray, new_name: str | None = None
) -> pa.Table:
    index = table.schema.get_field_index(name)
    return table.set_column(index, pa.field(new_name or name, values.type), values)


def cell_replaced(table: pa.Table, name: str, row: int, value: object, type_: pa.DataType) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return with_column(table, name, pa.array(values, type_))


# -- files a reader must refuse -------------------------------------------------------------------------------


def _bytes(content: bytes) -> Callable[[Path, pa.Table], None]:
    return lambda path, _good: path.write_bytes(content)


def _truncated(keep: Callable[[int], int]) -> Callable[[Path, pa.Table], None]:
    def write(path: Path, good: pa.Table) -> None:
        pq.write_table(good, path)
        raw = path.read_bytes()
        path.write_bytes(raw[: keep(len(raw))])

    return write


def _corrupt_last_row_group(path: Path, good: pa.Table) -> None:
    """Flip 8 bytes in the middle of trip_miles in the last row group (checksummed pages, as a careful writer does)."""
    pq.write_table(good, path, row_group_size=100, write_page_checksum=True)
    meta = pq.ParquetFile(path).metadata
    chunk = meta.row_group(meta.num_row_groups - 1).column(good.schema.get_field_index("trip_miles"))
    start = chunk.dictionary_page_offset or chunk.data_page_offset
    middle = start + chunk.total_compressed_size // 2
    raw = bytearray(path.read_bytes())
    for i in range(8):
        raw[middle + i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _table(make: Callable[[pa.Table], pa.Table]) -> Callable[[Path, pa.Table], None]:
    return lambda path, good: pq.write_table(make(good), path, row_group_size=100)


def _iso_text(table: pa.Table, *names: str, fmt: str = "%Y-%m-%d %H:%M:%S", utc: bool = False) -> pa.Table:
    """Timestamp columns published as ISO-8601 text (wall time, or with ``utc`` the instant with a ``Z``)."""
    for name in names:
        values = table[name]
        if utc:
            values = pc.assume_timezone(values, timezone="America/New_York").cast(pa.timestamp("us", tz="UTC"))
        table = with_column(table, name, pc.strftime(values, format=fmt))
    return table


def _text_timestamps(good: pa.Table) -> pa.Table:
    text = pc.strftime(good["pickup_datetime"], format="%Y-%m-%d %H:%M:%S").to_pylist()
    text[3] = "2022-06-31 25:61:00"
    return with_column(good, "pickup_datetime", pa.array(text, pa.string()))


STR = pa.string()


@dataclass(frozen=True)
class Rejected:
    name: str
    write: Callable[[Path, pa.Table], None]
    error: type[SourceRejected]
    words: tuple[str, ...]
    column: str | None = None
    mid_stream: bool = False  # fails after data files were already streamed (they must be deleted)
    tags: dict[str, str] = field(default_factory=dict)


REJECTED = [
    Rejected("zero_bytes", _bytes(b""), UnreadableSource, ("not a readable parquet file",)),
    Rejected("truncated_footer", _truncated(lambda n: n - 40), UnreadableSource, ("not a readable parquet file",)),
    Rejected("truncated_half", _truncated(lambda n: n // 2), UnreadableSource, ("not a readable parquet file",)),
    Rejected(
        "not_parquet_csv",
        _bytes(b"hvfhs_license_num,trip_miles\nHV0003,2.5\n" * 50),
        UnreadableSource,
        ("not a readable parquet file",),
    ),
    Rejected(
        "html_error_page",
        _bytes(b"<html><head><title>403 Forbidden</title></head><body>Forbidden</body></html>"),
        UnreadableSource,
        ("not a readable parquet file", "replace the file"),
    ),
    Rejected(
        "xml_error_body",
        _bytes(b'<?xml version="1.0"?><Error><Code>NoSuchKey</Code><Message>gone</Message></Error>'),
        UnreadableSource,
        ("not a readable parquet file",),
    ),
    Rejected(
        "corrupt_page_in_last_row_group",
        _corrupt_last_row_group,
        UnreadableSource,
        ("unreadable after 500 rows", "CRC"),
        mid_stream=True,
    ),
    Rejected("empty_valid_parquet", _table(lambda g: g.slice(0, 0)), SourceRejected, ("holds no rows",)),
    Rejected(
        "missing_required_column",
        _table(lambda g: g.drop_columns(["trip_miles"])),
        SourceSchemaMismatch,
        ("'trip_miles' is missing",),
        column="trip_miles",
    ),
    Rejected(
        "text_in_numeric_column",
        _table(lambda g: with_column(g, "base_passenger_fare", pc.cast(g["base_passenger_fare"], pa.string()))),
        SourceSchemaMismatch,
        ("'base_passenger_fare' is string", "expected a numeric column"),
        column="base_passenger_fare",
    ),
    Rejected(
        "unparseable_timestamps_as_text",
        _table(_text_timestamps),
        UnparseableTimestamp,
        ("'pickup_datetime' holds text that is not an ISO-8601 timestamp at row 3: '2022-06-31 25:61:00'",),
        column="pickup_datetime",
    ),
    Rejected(
        "unparseable_timestamp_late_in_the_file",
        _table(lambda g: cell_replaced(_iso_text(g, "dropoff_datetime"), "dropoff_datetime", ROWS - 7, "soon", STR)),
        UnparseableTimestamp,
        (f"'dropoff_datetime' holds text that is not an ISO-8601 timestamp at row {ROWS - 7}: 'soon'",),
        column="dropoff_datetime",
    ),
    Rejected(
        "text_in_a_timestamp_column_that_is_not_a_date",
        _table(lambda g: with_column(g, "request_datetime", pa.array(["2.5 miles"] * g.num_rows))),
        UnparseableTimestamp,
        ("'request_datetime' holds text that is not an ISO-8601 timestamp at row 0",),
        column="request_datetime",
    ),
    Rejected(
        "zone_id_beyond_int32",
        _table(lambda g: cell_replaced(g, "PULocationID", ROWS - 2, 2**40, pa.int64())),
        SourceSchemaMismatch,
        ("'PULocationID' is not castable",),
        column="PULocationID",
        mid_stream=True,
    ),
    Rejected(
        "flag_as_number",
        _table(lambda g: with_column(g, "shared_request_flag", pa.array([0] * g.num_rows, pa.int8()))),
        SourceSchemaMismatch,
        ("'shared_request_flag' is int8",),
        column="shared_request_flag",
    ),
    Rejected(
        "column_twice_in_two_cases",
        _table(lambda g: g.append_column("Airport_fee", g["airport_fee"])),
        SourceSchemaMismatch,
        ("present twice",),
        column="airport_fee",
    ),
]


@pytest.mark.parametrize("case", REJECTED, ids=lambda c: c.name)
def test_an_untrusted_file_is_rejected_whole_and_the_previous_month_stays(workspace, case, figure):
    cfg = workspace
    before = snapshot(cfg, MONTH)
    trips_version = version(cfg, "trips")
    path = Path(cfg.source) / file_name(MONTH)
    case.write(path, published_month(MONTH))

    with pytest.raises(case.error) as info:
        materialize(cfg, MONTH)

    error = info.value
    assert type(error) is case.error
    assert (error.partition, error.path, error.exit_code) == (MONTH, str(path), 3)
    for words in case.words:
        assert words in str(error)
    if case.column is not None:
        assert error.column == case.column
    # nothing of it is written: same files, rows and quarantine version; streamed files deleted
    after = snapshot(cfg, MONTH)
    assert after == before
    # one empty commit records the rejection and its message
    (rejected,) = [c for c in log(cfg, "trips") if c.version > trips_version]
    assert (rejected.partition, rejected.status, data_actions(rejected)) == (MONTH, "rejected", [])
    assert rejected.info["partitions.error"] == str(error)
    # status --json shows it; other months are untouched; the same bytes are not retried (a retry would fail
    # the same way): the month is rejected, not stale, until the file or the code changes
    rows = status(cfg)
    assert rows[MONTH]["state"] == "rejected"
    assert rows[MONTH]["reason"].endswith(str(error))
    assert rows[MONTH]["rows"] == before.trips_rows  # the previous success is still what readers get
    assert rows[OTHER]["state"] == "fresh"
    assert MONTH not in [r.partition for r in plan_months(cfg).stale]
    assert [r.state for r in plan_months(cfg, partitions=[MONTH]).rows] == [PartitionState.FORCED]  # a retry
    figure(
        "bad_input",
        case=case.name,
        outcome=f"rejected: {type(error).__name__}",
        message=str(error).split(": ", 2)[-1][:90],
        rows_lost=before.trips_rows + before.quarantine_rows - after.trips_rows - after.quarantine_rows,
        written=len(after.stored - before.stored),
    )


def test_another_months_file_filed_under_this_month_is_rejected_and_the_previous_version_stays(workspace, figure):
    cfg = workspace
    before = snapshot(cfg, MONTH)
    trips_version = version(cfg, "trips")
    path = Path(cfg.source) / file_name(MONTH)
    shutil.copyfile(Path(cfg.source) / file_name(OTHER), path)  # July's file saved as June's

    with pytest.raises(MisfiledSource) as info:
        materialize(cfg, MONTH)

    error = info.value
    rows = pq.ParquetFile(path).metadata.num_rows
    assert (error.partition, error.path, error.exit_code, error.likely, error.rows) == (
        MONTH,
        str(path),
        3,
        OTHER,
        rows,
    )
    assert error.outside > rows / 2
    assert f"have a pickup outside {MONTH}, most of them in {OTHER}: the file looks filed under the wrong month" in (
        str(error)
    )
    assert "replace it at the source" in str(error)
    assert snapshot(cfg, MONTH) == before  # nothing written: the good month stays whole
    (rejected,) = [c for c in log(cfg, "trips") if c.version > trips_version]
    assert (rejected.status, data_actions(rejected)) == ("rejected", [])
    assert status(cfg)[MONTH]["state"] == "rejected"
    figure("bad_input", case="misfiled_month", outcome="rejected: MisfiledSource", rows_lost=0, written=0)


@pytest.mark.parametrize(("moved", "rejected"), [(0.4, False), (0.6, True)])
def test_a_month_is_misfiled_only_when_most_of_its_rows_fall_outside_it(tmp_path, moved, rejected):
    cfg = local_settings(tmp_path)
    good = published_month(MONTH, 500, seed=12, anomalies="clean")
    n = int(len(good) * moved)
    shifted = pc.add(good["pickup_datetime"].slice(0, n), pa.scalar(40 * 86_400_000_000, pa.duration("us")))
    pickups = pa.concat_arrays(
        [shifted.combine_chunks().cast(good["pickup_datetime"].type), good["pickup_datetime"].slice(n).combine_chunks()]
    )
    write_file(cfg.source, MONTH, with_column(good, "pickup_datetime", pickups), row_group_size=100)

    if rejected:
        with pytest.raises(MisfiledSource, match=f"{n} of 500 rows"):
            materialize(cfg, MONTH)
        assert version(cfg, "quarantine") is None  # nothing written
    else:
        result = materialize(cfg, MONTH)
        assert result.quarantined_by_rule.get("pickup_outside_month") == n  # bad rows, not a bad file


def test_the_next_run_retries_a_rejected_month_once_the_file_is_replaced(workspace, figure):
    cfg = workspace
    path = Path(cfg.source) / file_name(MONTH)
    path.write_bytes(b"<html>503 Service Unavailable</html>")
    with pytest.raises(UnreadableSource):
        materialize(cfg, MONTH)
    assert status(cfg)[MONTH]["state"] == "rejected"

    write_file(cfg.source, MONTH, published_month(MONTH, 450, seed=11))
    result = materialize(cfg, MONTH)

    assert result.rows_source == 450 == result.rows_written + result.rows_quarantined
    row = status(cfg)[MONTH]
    assert (row["state"], row["rows"], row["rows_quarantined"]) == (
        "fresh",
        result.rows_written,
        result.rows_quarantined,
    )
    figure("bad_input", case="retry_after_replacement", outcome="materialized on the next run", rows_lost=0)


def test_a_rejection_through_the_cli_is_one_line_and_exit_code_3(workspace):
    cfg = workspace
    path = Path(cfg.source) / file_name(MONTH)
    _corrupt_last_row_group(path, published_month(MONTH))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli_main(["materialize", "--partition", MONTH, "--source", cfg.source, "--sink", cfg.sink])
    assert code == 3
    (line,) = err.getvalue().strip().splitlines()
    assert line.startswith(f"taxi-assets: {MONTH}: {path}: unreadable after 500 rows")
    assert status(cfg)[MONTH]["reason"].endswith(line.removeprefix("taxi-assets: "))


# -- drift that cannot change a value: cast, identical rows ----------------------------------------------------

TS_COLUMNS = ("request_datetime", "on_scene_datetime", "pickup_datetime", "dropoff_datetime")
STRING_COLUMNS = ("hvfhs_license_num", "dispatching_base_num", "originating_base_num")
FLAG_COLUMNS = ("shared_request_flag", "shared_match_flag", "access_a_ride_flag", "wav_request_flag", "wav_match_flag")
NULL_TYPED = ("airport_fee", "wav_match_flag", "on_scene_datetime")


def _cast_columns(names, to: Callable[[pa.DataType], pa.DataType]) -> Callable[[pa.Table], pa.Table]:
    def make(table: pa.Table) -> pa.Table:
        for name in names:
            table = with_column(table, name, table[name].cast(to(table.schema.field(name).type)))
        return table

    return make


def _dictionary(table: pa.Table) -> pa.Table:
    for name in (*STRING_COLUMNS, *FLAG_COLUMNS):
        table = with_column(table, name, pc.dictionary_encode(table[name]))
    return table


def _tz_utc(table: pa.Table) -> pa.Table:
    for name in TS_COLUMNS:
        instants = pc.assume_timezone(table[name], timezone="America/New_York")
        table = with_column(table, name, instants.cast(pa.timestamp("us", tz="UTC")))
    return table


def _null_typed(table: pa.Table) -> pa.Table:
    for name in NULL_TYPED:
        table = with_column(table, name, pa.nulls(table.num_rows))
    return table


def _renamed(table: pa.Table) -> pa.Table:
    names = {"PULocationID": "pulocationid", "airport_fee": "Airport_fee", "hvfhs_license_num": "HVFHS_License_Num"}
    return table.rename_columns([names.get(n, n) for n in table.column_names])


def _extra(table: pa.Table) -> pa.Table:
    return table.append_column("request_source", pa.array(["app"] * table.num_rows)).append_column(
        "surge_multiplier", pa.array([1.25] * table.num_rows)
    )


def _shuffled_columns(table: pa.Table) -> pa.Table:
    return table.select(list(reversed(table.column_names)))


def _everything(table: pa.Table) -> pa.Table:
    table = _cast_columns(("PULocationID", "DOLocationID", "trip_time"), lambda _: pa.int32())(table)
    table = _cast_columns(TS_COLUMNS, lambda _: pa.timestamp("ns"))(table)
    table = _cast_columns((*STRING_COLUMNS, *FLAG_COLUMNS), lambda _: pa.large_string())(table)
    return _shuffled_columns(_extra(_renamed(table)))


@dataclass(frozen=True)
class Drift:
    name: str
    make: Callable[[pa.Table], pa.Table]
    options: dict = field(default_factory=dict)
    nulled: tuple[str, ...] = ()  # canonical columns the drifted file carries as all-null
    extra: tuple[str, ...] = ()


DRIFTS = [
    Drift("ids_and_seconds_int32", _cast_columns(("PULocationID", "DOLocationID", "trip_time"), lambda _: pa.int32())),
    Drift("timestamps_ns", _cast_columns(TS_COLUMNS, lambda _: pa.timestamp("ns"))),
    Drift("timestamps_ms", _cast_columns(TS_COLUMNS, lambda _: pa.timestamp("ms"))),
    Drift("timestamps_int96", lambda t: t, {"use_deprecated_int96_timestamps": True}),
    Drift("timestamps_tz_aware_utc", _tz_utc),
    Drift("strings_large_string", _cast_columns((*STRING_COLUMNS, *FLAG_COLUMNS), lambda _: pa.large_string())),
    Drift("strings_dictionary", _dictionary),
    Drift("null_typed_columns", _null_typed, nulled=NULL_TYPED),
    Drift("column_name_case_variants", _renamed),
    Drift("unknown_extra_columns", _extra, extra=("request_source", "surge_multiplier")),
    Drift("columns_in_another_order", _shuffled_columns),
    Drift("all_at_once", _everything, extra=("request_source", "surge_multiplier")),
    Drift("timestamps_iso_text", lambda t: _iso_text(t, *TS_COLUMNS)),
    Drift("timestamps_iso_text_with_t", lambda t: _iso_text(t, *TS_COLUMNS, fmt="%Y-%m-%dT%H:%M:%S")),
    Drift("timestamps_iso_text_utc_z", lambda t: _iso_text(t, *TS_COLUMNS, fmt="%Y-%m-%dT%H:%M:%SZ", utc=True)),
]


@pytest.fixture(scope="module")
def canonical(baseline: Path) -> tuple[pa.Table, pa.Table]:
    cfg = local_settings(baseline)
    return month_table(cfg, "trips", MONTH), month_table(cfg, "quarantine", MONTH)


def nulled(table: pa.Table, name: str) -> pa.Table:
    field = table.schema.field(name)
    return table.set_column(table.schema.get_field_index(name), field, pa.nulls(len(table), field.type))


@pytest.mark.parametrize("drift", DRIFTS, ids=lambda d: d.name)
def test_safe_drift_is_cast_and_gives_exactly_the_canonical_rows(tmp_path, canonical, drift, figure):
    cfg = local_settings(tmp_path)
    published = published_month(MONTH)
    path = write_file(cfg.source, MONTH, drift.make(published), **drift.options)
    if drift.name == "timestamps_int96":
        assert pq.ParquetFile(path).schema.column(3).physical_type == "INT96"

    result = materialize(cfg, MONTH)

    trips, quarantine = month_table(cfg, "trips", MONTH), month_table(cfg, "quarantine", MONTH)
    want_trips, want_quarantine = canonical
    for name in drift.nulled:
        want_trips, want_quarantine = nulled(want_trips, name), nulled(want_quarantine, name)
    assert trips.schema.names == want_trips.schema.names  # canonical names; extra columns left out
    assert rows_counter(trips) == rows_counter(want_trips)
    assert rows_counter(quarantine) == rows_counter(want_quarantine)
    assert result.rows_source == ROWS == result.rows_written + result.rows_quarantined
    assert sorted(result.extra_columns) == sorted(drift.extra)
    extra = read_records(cfg.trips_uri)[MONTH].latest_success.extra
    assert sorted(filter(None, extra["fhvhv.extra_columns"].split(","))) == sorted(drift.extra)
    assert status(cfg)[MONTH]["state"] == "fresh"
    figure("bad_input", case=drift.name, outcome="cast: identical rows", rows_lost=ROWS - len(trips) - len(quarantine))


# -- bad rows: quarantined with their rule and reason, nothing dropped or altered ------------------------------


def test_rows_out_of_range_or_outside_the_month_are_quarantined_with_their_reason(tmp_path, figure):
    cfg = local_settings(tmp_path)
    extra = {"pickup_outside_month": 0.01, "bad_year": 0.005, "zone_out_of_range": 0.01, "null_required": 0.01}
    write_month_file(cfg.source, MONTH, 2_000, seed=3, anomalies="realistic", extra=extra, layout="nonuniform")
    path = Path(cfg.source) / file_name(MONTH)
    published = pq.read_table(path)
    by_hand = {  # row -> (column, value, rule)
        11: ("base_passenger_fare", 1e6, "fare_over_limit"),
        12: ("trip_miles", -3.0, "non_positive_miles"),
        13: ("trip_time", 0, "non_positive_duration"),
        14: ("tolls", -1.0, "negative_charge"),
        15: ("DOLocationID", 300, "zone_out_of_range"),
    }
    for row, (name, value, _) in by_hand.items():
        published = cell_replaced(published, name, row, value, published.schema.field(name).type)
    pq.write_table(published, path, row_group_size=700)
    truth = json.loads((Path(cfg.source) / TRUTH_DIR / truth_file_name(MONTH)).read_text())["rows_by_id"]

    result = materialize(cfg, MONTH)

    quarantine = month_table(cfg, "quarantine", MONTH)
    rules = dict(zip(quarantine["source_row"].to_pylist(), quarantine["rule"].to_pylist(), strict=True))
    expected = {
        "A17:pickup_outside_month": "pickup_outside_month",
        "A17:bad_year": "pickup_outside_month",
        "A17:zone_out_of_range": "zone_out_of_range",
        "A17:null_required": "missing_required",
    }
    placed = 0
    for anomaly, rule in expected.items():
        for row in truth.get(anomaly, []):
            if row not in by_hand:
                assert rule in rules[row], (anomaly, row, rules.get(row))
                placed += 1
    for row, (_, _, rule) in by_hand.items():
        assert rule in rules[row]
    assert placed > 40
    reasons = {r.name: r.reason for r in RULES}
    for names, reason in zip(quarantine["rule"].to_pylist(), quarantine["reason"].to_pylist(), strict=True):
        assert reason == "; ".join(reasons[n] for n in names)
    # nothing dropped, nothing altered: trips + quarantine are the source rows under the documented casts
    plan = plan_columns(published.schema, partition=MONTH, path=str(path))
    cast = pa.Table.from_batches(
        [conform(b, plan, partition=MONTH, path=str(path)).batch for b in published.to_batches()], trips_schema()
    )
    trips = month_table(cfg, "trips", MONTH)
    kept = quarantine.select(trips.column_names)
    assert rows_counter(pa.concat_tables([trips, kept])) == rows_counter(cast)
    assert result.rows_source == 2_000 == len(trips) + len(quarantine)
    record = read_records(cfg.trips_uri)[MONTH].latest_success
    assert (record.rows_source, record.rows_written, record.rows_quarantined) == (2_000, len(trips), len(quarantine))
    figure(
        "bad_input",
        case="rows_out_of_range_or_outside_month",
        outcome=f"quarantined {len(quarantine)} rows with reasons",
        rows_lost=2_000 - len(trips) - len(quarantine),
    )


# -- the listing: names that are not a month, two files for one month ------------------------------------------


def test_names_that_are_not_a_real_month_are_skipped_and_reported(tmp_path, figure):
    cfg = local_settings(tmp_path)
    good = published_month(OTHER, 200, seed=8)
    write_file(cfg.source, OTHER, good)
    odd = {
        "fhvhv_tripdata_2022-13.parquet": "is not a real month",
        "fhvhv_tripdata_2022-00.parquet": "is not a real month",
        "fhvhv_tripdata_2022-6.parquet": "does not match the pattern",
        "fhvhv_tripdata_2022-06.parquet.bak": "does not match the pattern",
        "yellow_tripdata_2022-06.parquet": "does not match the pattern",
        "fhvhv_tripdata_2018-12.parquet": "before the first month 2019-02",
    }
    for name in odd:
        pq.write_table(good, Path(cfg.source) / name)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["plan", "--source", cfg.source, "--sink", cfg.sink]) == 0
    printed = " ".join(out.getvalue().split())  # rich may fold a long line

    skipped = {Path(s.uri).name: s.reason for s in plan_months(cfg).listing.skipped}
    assert set(skipped) == set(odd)
    for name, words in odd.items():
        assert words in skipped[name]
    # one line for all of them: a count per cause and the first names
    (line,) = [ln for ln in out.getvalue().splitlines() if ln.startswith("skipped source files:")]
    assert "3 files not matching the pattern" in printed
    assert "2 files matching the pattern but naming no real month" in printed
    assert "1 file naming months outside this asset" in printed
    assert str(cfg.source) not in line  # names, not paths
    assert set(status(cfg)) == {OTHER}
    assert materialize(cfg, OTHER).rows_source == 200
    figure("bad_input", case="name_not_a_month", outcome=f"skipped and reported ({len(odd)} names)", rows_lost=0)


def test_two_files_for_one_month_reject_that_month_only(workspace, figure):
    cfg = workspace
    before = snapshot(cfg, MONTH)
    trips_version = version(cfg, "trips")
    again = write_file(Path(cfg.source) / "reissued", MONTH, published_month(MONTH, 500, seed=9))
    first = Path(cfg.source) / file_name(MONTH)

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli_main(["materialize", "--partition", MONTH, "--source", cfg.source, "--sink", cfg.sink])
    assert code == DuplicatePartitionSource.exit_code == 3
    (line,) = err.getvalue().strip().splitlines()
    assert line.startswith(f"taxi-assets: {MONTH}: 2 source files map to this partition")
    assert str(first) in line
    assert str(again) in line

    rows = status(cfg)
    assert rows[MONTH]["state"] == "failed"
    assert rows[MONTH]["reason"].startswith("source cannot be used: 2 source files map to this partition")
    assert rows[OTHER]["state"] == "fresh"
    assert snapshot(cfg, MONTH) == before
    assert [c for c in log(cfg, "trips") if c.version > trips_version] == []
    write_file(cfg.source, OTHER, published_month(OTHER, 320, seed=10))  # other months go on
    assert materialize(cfg, OTHER).rows_source == 320

    again.unlink()
    assert plan_states(cfg)[MONTH][0] == "fresh"  # the one remaining file is the one materialized
    figure("bad_input", case="duplicate_source_files", outcome="rejected: DuplicatePartitionSource", rows_lost=0)
