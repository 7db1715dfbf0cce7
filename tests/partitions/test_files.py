import json
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake

from partitions.files import add_action_for, partition_file_path, stats_json, write_partition_file


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
