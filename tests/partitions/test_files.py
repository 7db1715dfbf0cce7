import json
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake
from fsspec.implementations.local import LocalFileSystem
from partitions_cases import COLUMN, SCHEMA, month_rows, record, source

from partitions.delta_log import read_records
from partitions.files import (
    add_action_for,
    missing_data_files,
    partition_file_path,
    stats_json,
    write_partition_file,
)
from partitions.overwrite import commit_files
from partitions.staleness import PartitionState, plan


def metadata_of(table: pa.Table, tmp_path, **kwargs) -> pq.FileMetaData:
    path = tmp_path / "f.parquet"
    pq.write_table(table, path, **kwargs)
    return pq.read_metadata(path)


def test_stats_follow_the_delta_protocol_and_widen_timestamps_to_milliseconds(tmp_path):
    table = pa.table(
        {
            "id": pa.array([3, None, 1], pa.int64()),
            "amount": [1.5, 2.5, None],
            "name": ["b", "a", None],
            "day": [date(2019, 2, 3), date(2019, 2, 1), None],
            "at": pa.array([datetime(2019, 2, 1, 0, 0, 0, 1500), datetime(2019, 2, 2, 0, 0, 0, 2500), None]),
            "at_utc": pa.array([datetime(2019, 2, 1, 10, 0, 0)] * 3, pa.timestamp("us", tz="UTC")),
        }
    )
    stats = json.loads(stats_json(metadata_of(table, tmp_path, row_group_size=2)))
    assert stats["numRecords"] == 3
    assert stats["nullCount"] == {"id": 1, "amount": 1, "name": 1, "day": 1, "at": 1, "at_utc": 0}
    assert stats["minValues"] == {
        "id": 1,
        "amount": 1.5,
        "name": "a",
        "day": "2019-02-01",
        "at": "2019-02-01 00:00:00.001",
        "at_utc": "2019-02-01T10:00:00.000Z",
    }
    assert stats["maxValues"]["at"] == "2019-02-02 00:00:00.003"  # ceiled: 2.5 ms -> 3 ms
    assert stats["maxValues"]["id"] == 3


def test_bounds_that_cannot_be_stated_exactly_are_left_out(tmp_path):
    table = pa.table({"long": ["x" * 40, "y"], "nan": [float("nan"), 1.0], "raw": [b"a", b"b"]})
    stats = json.loads(stats_json(metadata_of(table, tmp_path)))
    assert "long" not in stats["minValues"]
    assert "raw" not in stats["minValues"]
    assert stats["nullCount"]["long"] == 0


def test_stats_agree_with_delta_rs_on_plain_columns(tmp_path):
    table = pa.table({"id": [5, 2, 9], "amount": [0.5, -1.0, 2.0], "name": ["m", "c", "x"]})
    write_deltalake(str(tmp_path / "ref"), table)
    log = (tmp_path / "ref/_delta_log/00000000000000000000.json").read_text().splitlines()
    (add,) = [json.loads(line)["add"] for line in log if line.startswith('{"add"')]
    theirs = json.loads(add["stats"])
    ours = json.loads(stats_json(metadata_of(table, tmp_path)))
    assert ours == theirs


def test_add_action_and_partition_file(tmp_path):
    path = partition_file_path("month", "2019-02")
    assert path.startswith("month=2019-02/part-")
    assert path.endswith(".parquet")
    table = pa.table({"month": ["2019-02"] * 2, "id": [1, 2]})
    add = write_partition_file(str(tmp_path), table, column="month", key="2019-02")
    written = pq.read_table(tmp_path / add.path)
    assert written.column_names == ["id"]
    assert add.size == (tmp_path / add.path).stat().st_size
    assert add.partition_values == {"month": "2019-02"}
    again = add_action_for(
        add.path,
        size=add.size,
        metadata=pq.read_metadata(tmp_path / add.path),
        partition_values={"month": "2019-02"},
        modification_time=7,
    )
    assert (again.stats, again.modification_time, again.data_change) == (add.stats, 7, True)


# -- data files the log references but the store lost ---------------------------------------------------------


def three_months(uri: str, options=None) -> dict[str, list[str]]:
    """2019-02 and 2019-04 in one file each, 2019-03 in two; returns the relative paths per month."""
    paths: dict[str, list[str]] = {}
    for key, parts in [("2019-02", 1), ("2019-03", 2), ("2019-04", 1)]:
        adds = [
            write_partition_file(uri, month_rows(key, 5, start=5 * i), column=COLUMN, key=key, storage_options=options)
            for i in range(parts)
        ]
        rec = record(key, f"run-{key}", rows=5 * parts)
        commit_files(uri, adds, column=COLUMN, record=rec, schema=SCHEMA, storage_options=options)
        paths[key] = sorted(a.path for a in adds)
    return paths


def test_missing_data_files_names_the_lost_files_per_partition_from_one_listing_per_folder(tmp_path, monkeypatch):
    uri = str(tmp_path / "events")
    paths = three_months(uri)
    assert missing_data_files(uri) == {}
    lost = paths["2019-03"][1]
    (tmp_path / "events" / lost).unlink()
    for gone in paths["2019-04"]:
        (tmp_path / "events" / gone).unlink()
    (tmp_path / "events" / "month=2019-04").rmdir()  # the whole folder went

    listings: list[str] = []
    real_ls = LocalFileSystem.ls

    def counting_ls(self, path, detail=False, **kwargs):
        listings.append(path)
        return real_ls(self, path, detail=detail, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "ls", counting_ls)
    assert missing_data_files(uri) == {"2019-03": [lost], "2019-04": paths["2019-04"]}
    assert len(listings) == 3, "one listing per partition folder, not a request per file"
    assert missing_data_files(uri, ["2019-02", "2019-03"]) == {"2019-03": [lost]}
    assert missing_data_files(uri, "2019-02") == {}
    assert missing_data_files(str(tmp_path / "no-table")) == {}


def test_missing_data_files_needs_one_partition_column(tmp_path):
    data = pa.table({"a": ["x"], "b": ["y"], "v": [1]})
    write_deltalake(str(tmp_path / "two"), data, partition_by=["a", "b"])
    with pytest.raises(ValueError, match="partitioned by one column"):
        missing_data_files(str(tmp_path / "two"))


def test_a_partition_whose_files_are_gone_plans_failed_and_is_rebuilt(tmp_path):
    uri = str(tmp_path / "events")
    paths = three_months(uri)
    (tmp_path / "events" / paths["2019-02"][0]).unlink()
    sources = {k: source(k) for k in paths}
    recorded = read_records(uri)
    before = plan(sources, recorded, code_version="code-1")
    assert {r.state for r in before} == {PartitionState.FRESH}, "the log alone says all is well"
    rows = plan(sources, recorded, code_version="code-1", missing_files=missing_data_files(uri))
    assert [(r.partition, r.state) for r in rows] == [
        ("2019-02", PartitionState.FAILED),
        ("2019-03", PartitionState.FRESH),
        ("2019-04", PartitionState.FRESH),
    ]
    assert rows[0].reason == (
        f"data files referenced by the log are gone: {paths['2019-02'][0]}; the next run rewrites the partition"
    )


@pytest.mark.integration
def test_missing_data_files_on_s3(s3_server, s3_bucket):
    options = s3_server.storage_options()
    uri = f"s3://{s3_bucket}/events"
    paths = three_months(uri, options)
    s3_server.boto3_client().delete_object(Bucket=s3_bucket, Key=f"events/{paths['2019-03'][0]}")
    assert missing_data_files(uri, storage_options=options) == {"2019-03": [paths["2019-03"][0]]}
