"""The month reader streams: batches of a single huge row group, in order, with bounded Arrow memory."""

from __future__ import annotations

import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from month_builders import set_column, valid_month, write_source

from partitions.source import SourceFile
from taxi_assets.errors import SourceSchemaMismatch, UnreadableSource
from taxi_assets.io.reader import READ_AHEAD, MonthReader, read_ahead
from taxi_assets.model.casts import conform, plan_columns
from taxi_assets.model.schema import quarantine_schema, trips_batch_schema, trips_schema
from taxi_assets.synth import write_month_file

KEEP_POOLS_ALIVE: list[pa.MemoryPool] = []


def read_all(source: SourceFile, **kwargs):
    clean, quarantined = [], []
    with MonthReader(source, **kwargs) as reader:
        for part in reader.batches():
            assert part.batch.schema == trips_batch_schema()  # strings stay dictionaries while streaming
            clean.append(part.clean)
            quarantined.append(part.quarantine)
    as_table = pa.Table.from_batches(clean, schema=trips_batch_schema()).cast(trips_schema())
    return as_table, pa.Table.from_batches(quarantined, schema=quarantine_schema()), reader.stats


def synth_source(tmp_path, month: str, rows: int, layout: str) -> SourceFile:
    written = write_month_file(str(tmp_path), month, rows, seed=5, layout=layout)
    return SourceFile(partition=month, uri=written.uri, size=written.bytes, fingerprint="t", last_modified=None)


def test_a_single_row_group_is_read_in_batches_and_every_row_is_accounted_for(tmp_path):
    source = synth_source(tmp_path, "2019-06", 50_000, "single")
    clean, quarantined, stats = read_all(source, batch_rows=4_096)
    assert (stats.row_groups, stats.largest_row_group, stats.rows) == (1, 50_000, 50_000)
    assert stats.batches == 13  # ceil(50 000 / 4 096): never the whole group at once
    assert clean.num_rows + quarantined.num_rows == 50_000
    assert stats.quarantined == quarantined.num_rows == sum(1 for _ in quarantined.column("source_row").to_pylist())
    published = pq.read_table(source.uri)
    rows = quarantined.column("source_row").to_pylist()
    assert published["trip_miles"].take(rows).to_pylist() == quarantined["trip_miles"].to_pylist()


def test_batches_match_a_whole_file_read_on_nonuniform_groups(tmp_path):
    source = synth_source(tmp_path, "2023-04", 30_000, "nonuniform")
    streamed, _, stats = read_all(source, batch_rows=1_000)
    assert stats.row_groups > 3
    whole = pq.read_table(source.uri)
    plan = plan_columns(whole.schema, partition="2023-04", path=source.uri)
    expected = conform(whole.combine_chunks().to_batches()[0], plan, partition="2023-04", path=source.uri)
    _, quarantined, _ = read_all(source)
    keep = set(range(30_000)) - set(quarantined.column("source_row").to_pylist())
    mask = pa.array([i in keep for i in range(30_000)])
    assert streamed.equals(pa.Table.from_batches([expected.batch.filter(mask)]))


@pytest.mark.parametrize("month", ["2019-02", "2023-03"])
def test_flags_read_as_dictionaries_give_the_plain_cast(tmp_path, month):
    # 2019-02: wav_match_flag null-typed; 2023-03: flags are large_string
    source = synth_source(tmp_path, month, 5_000, "single")
    clean, quarantined, stats = read_all(source, batch_rows=1_024)
    whole = pq.read_table(source.uri)
    plan = plan_columns(whole.schema, partition=month, path=source.uri)
    expected = conform(whole.combine_chunks().to_batches()[0], plan, partition=month, path=source.uri)
    assert stats.flags_nulled == expected.flags_nulled > 0
    both = pa.concat_tables([clean, quarantined.select(clean.column_names)]).sort_by("request_datetime")
    for flag in ("shared_request_flag", "access_a_ride_flag", "wav_match_flag"):
        assert sorted(both[flag].to_pylist(), key=str) == sorted(expected.batch.column(flag).to_pylist(), key=str)


def test_arrow_memory_stays_near_one_batch_on_a_huge_row_group(tmp_path):
    table = valid_month("2022-03", 200_000)
    source = write_source(tmp_path / "src", "2022-03", table)  # one 200 000-row group
    decoded = pq.read_table(source.uri).nbytes
    batch_bytes = decoded * 8_192 / 200_000

    def peak(read_ahead: int) -> int:
        pool = pa.proxy_memory_pool(pa.system_memory_pool())
        KEEP_POOLS_ALIVE.append(pool)  # a buffer outliving its pool would crash the interpreter at exit
        previous = pa.default_memory_pool()
        pa.set_memory_pool(pool)
        try:
            with MonthReader(source, batch_rows=8_192, read_ahead=read_ahead) as reader:
                rows = sum(part.clean.num_rows + part.quarantine.num_rows for part in reader.batches())
        finally:
            pa.set_memory_pool(previous)
        assert rows == 200_000
        return int(pool.max_memory())

    inline = peak(0)
    assert inline < decoded / 3  # the whole group decoded would be `decoded` bytes and more
    assert peak(READ_AHEAD) < inline + READ_AHEAD * 2 * batch_bytes  # plus the batches decoded ahead, no more


def test_a_file_without_the_arrow_schema_still_conforms(tmp_path):
    table = valid_month("2023-05", 2_000)  # large_string and int32 in the Arrow schema
    source = write_source(tmp_path, "2023-05", table, store_schema=False)
    clean, quarantined, _ = read_all(source)
    assert clean.num_rows + quarantined.num_rows == 2_000


def test_extra_columns_are_reported_in_the_stats(tmp_path):
    table = set_column(valid_month("2022-07", 100), "request_source", pa.array(["app"] * 100))
    _, _, stats = read_all(write_source(tmp_path, "2022-07", table))
    assert stats.extra_columns == ("request_source",)


def test_a_schema_problem_is_raised_when_the_file_is_opened(tmp_path):
    table = valid_month("2022-07", 100).drop_columns(["trip_miles"])
    source = write_source(tmp_path, "2022-07", table)
    with pytest.raises(SourceSchemaMismatch, match="trip_miles"), MonthReader(source):
        pass


@pytest.mark.parametrize("content", [b"", b"<html>403 Forbidden</html>", b"PAR1" + b"\0" * 64])
def test_a_file_that_is_not_parquet_is_unreadable_with_its_month_and_path(tmp_path, content):
    path = tmp_path / "fhvhv_tripdata_2022-07.parquet"
    path.write_bytes(content)
    source = SourceFile(partition="2022-07", uri=str(path), size=len(content), fingerprint="x", last_modified=None)
    with pytest.raises(UnreadableSource) as info, MonthReader(source):
        pass
    assert info.value.partition == "2022-07"
    assert info.value.path == str(path)
    assert "replace the file" in str(info.value)


def test_a_truncated_page_fails_as_unreadable_after_the_rows_already_read(tmp_path):
    source = write_source(tmp_path, "2022-08", valid_month("2022-08", 20_000), row_group_size=5_000)
    raw = bytearray((tmp_path / "fhvhv_tripdata_2022-08.parquet").read_bytes())
    meta = pq.ParquetFile(source.uri).metadata
    start = meta.row_group(2).column(9).data_page_offset  # trip_miles of the third group
    raw[start : start + 4_000] = b"\xff" * 4_000
    (tmp_path / "fhvhv_tripdata_2022-08.parquet").write_bytes(bytes(raw))
    with pytest.raises(UnreadableSource, match="unreadable after"), MonthReader(source, batch_rows=5_000) as reader:
        for _ in reader.batches():
            pass


def test_reading_ahead_gives_the_same_batches_as_reading_inline(tmp_path):
    source = synth_source(tmp_path, "2023-04", 20_000, "nonuniform")
    ahead, ahead_q, ahead_stats = read_all(source, batch_rows=1_000, read_ahead=3)
    inline, inline_q, inline_stats = read_all(source, batch_rows=1_000, read_ahead=0)
    assert ahead.equals(inline)
    assert ahead_q.equals(inline_q)
    assert ahead_stats == inline_stats


def test_a_decoding_error_ahead_is_raised_at_its_batch(tmp_path):
    def decoded():
        yield from (pa.record_batch({"x": [i]}) for i in range(3))
        raise pa.ArrowInvalid("bad page")

    batches = read_ahead(decoded(), 2, name="test-read")
    got = [next(batches).column(0)[0].as_py() for _ in range(3)]
    with pytest.raises(pa.ArrowInvalid, match="bad page"):
        next(batches)
    assert got == [0, 1, 2]  # every batch before the bad one reached the consumer first


def test_stopping_early_stops_the_reading_thread(tmp_path):
    source = synth_source(tmp_path, "2023-05", 20_000, "single")
    with MonthReader(source, batch_rows=500, read_ahead=2) as reader:
        batches = reader.batches()
        next(batches)
        assert any(t.name == "read-2023-05" for t in threading.enumerate())
        batches.close()  # as when the writer fails mid-month
    assert not any(t.name == "read-2023-05" for t in threading.enumerate())
