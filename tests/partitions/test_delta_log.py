import shutil
import warnings
from pathlib import Path

import pytest
from deltalake import DeltaTable
from partitions_cases import COLUMN, SCHEMA, month_rows, record

from partitions.delta_log import (
    STATE_DIR,
    RecordsGapWarning,
    find_record,
    maybe_write_state_checkpoint,
    read_records,
    read_state,
    write_state_checkpoint,
)
from partitions.errors import TableLogDamaged
from partitions.maintenance import checkpoint, compact
from partitions.overwrite import overwrite_partition, record_failure
from partitions.storage_errors import open_table


def write(uri, key, run_id, n=5, options=None):
    return overwrite_partition(
        uri, month_rows(key, n), column=COLUMN, record=record(key, run_id, rows=n), storage_options=options
    )


def fail(uri, key, run_id, options=None):
    rec = record(key, run_id, status="failed", error=f"{run_id} broke")
    return record_failure(uri, rec, schema=SCHEMA, column=COLUMN, storage_options=options)


def build(uri, options=None):
    """Twelve commits over three partitions: successes, a failure, a compaction with no record."""
    for i, key in enumerate(["2019-02", "2019-03", "2019-04"] * 3):
        write(uri, key, f"run-{i}", options=options)
    fail(uri, "2019-03", "run-f", options)
    compact(uri, storage_options=options)  # a commit that is not ours: skipped by the reader
    write(uri, "2019-04", "run-last", options=options)


def summary(histories):
    return {
        k: (h.latest_success and h.latest_success.run_id, h.latest_failure and h.latest_failure.run_id)
        for k, h in histories.items()
    }


EXPECTED = {"2019-02": ("run-6", None), "2019-03": ("run-7", "run-f"), "2019-04": ("run-last", None)}


def test_no_table_means_no_records(tmp_path):
    assert read_records(str(tmp_path / "nothing")) == {}
    assert read_state(str(tmp_path / "nothing")).version == -1


def test_records_fold_latest_success_and_newer_failure_and_carry_their_version(tmp_path):
    uri = str(tmp_path / "events")
    build(uri)
    state = read_state(uri)
    assert summary(state.histories) == EXPECTED
    assert state.version == DeltaTable(uri).version()
    assert state.state_version is None
    assert state.commits_read == state.version + 1
    success = state.histories["2019-04"].latest_success
    assert DeltaTable(uri).history(1)[0]["partitions.run_id"] == success.run_id
    assert success.version == state.version


def test_a_state_checkpoint_limits_reading_to_later_commits_with_the_same_answer(tmp_path):
    uri = str(tmp_path / "events")
    build(uri)
    full = read_records(uri)
    version = write_state_checkpoint(uri)
    assert (Path(uri) / STATE_DIR / f"{version:020d}.json").is_file()
    state = read_state(uri)
    assert (state.state_version, state.commits_read, state.histories) == (version, 0, full)
    write(uri, "2019-02", "run-after")
    fail(uri, "2019-04", "run-f2")
    state = read_state(uri)
    assert state.commits_read == 2
    assert summary(state.histories) == {**EXPECTED, "2019-02": ("run-after", None), "2019-04": ("run-last", "run-f2")}
    shutil.rmtree(Path(uri) / STATE_DIR)
    assert read_records(uri) == state.histories


def test_reading_up_to_a_version_ignores_later_commits(tmp_path):
    uri = str(tmp_path / "events")
    v1 = write(uri, "2019-02", "run-1")
    write(uri, "2019-02", "run-2")
    assert read_state(uri, up_to=v1).histories["2019-02"].latest_success.run_id == "run-1"
    assert write_state_checkpoint(uri, version=v1) == v1
    assert read_state(uri).histories["2019-02"].latest_success.run_id == "run-2"


def test_records_survive_delta_log_cleanup_through_the_state_checkpoint(tmp_path):
    uri = str(tmp_path / "events")
    DeltaTable.create(
        uri, schema=SCHEMA, partition_by=[COLUMN], configuration={"delta.logRetentionDuration": "interval 0 seconds"}
    )
    build(uri)
    before = read_records(uri)
    version = checkpoint(uri, cleanup_logs=True)
    commits = sorted(p.name for p in (Path(uri) / "_delta_log").glob("*.json"))
    assert commits == [f"{version:020d}.json"], "log cleanup deleted the older commit files"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_records(uri) == before
    write(uri, "2019-05", "run-new")
    assert summary(read_records(uri)) == {**EXPECTED, "2019-05": ("run-new", None)}


def test_lost_commits_without_a_state_checkpoint_warn_and_plan_as_missing(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02", "run-1")
    write(uri, "2019-03", "run-2")
    DeltaTable(uri).create_checkpoint()
    write(uri, "2019-04", "run-3")
    for version in (0, 1):
        (Path(uri) / "_delta_log" / f"{version:020d}.json").unlink()
    with pytest.warns(RecordsGapWarning, match="commits 0..1 are gone"):
        recorded = read_records(uri)
    assert summary(recorded) == {"2019-03": ("run-2", None), "2019-04": ("run-3", None)}


def test_a_missing_pointer_falls_back_to_the_newest_state_file(tmp_path):
    uri = str(tmp_path / "events")
    build(uri)
    version = write_state_checkpoint(uri)
    (Path(uri) / STATE_DIR / "_last.json").unlink()
    state = read_state(uri)
    assert (state.state_version, state.commits_read) == (version, 0)


def test_writers_fold_a_state_checkpoint_once_enough_commits_piled_up(tmp_path):
    uri = str(tmp_path / "events")
    versions = [write(uri, "2019-02", f"run-{i}") for i in range(5)]
    assert versions == [1, 2, 3, 4, 5]  # version 0 is the empty CREATE commit
    assert maybe_write_state_checkpoint(uri, 1, every=3) is None  # 2 commits so far
    assert maybe_write_state_checkpoint(uri, 2, every=3) == 2  # 3 commits: fold
    assert maybe_write_state_checkpoint(uri, 4, every=3) is None  # 2 since the last fold
    assert maybe_write_state_checkpoint(uri, 5, every=3) == 5
    assert read_state(uri).state_version == 5


def test_find_record_looks_only_after_a_version(tmp_path):
    uri = str(tmp_path / "events")
    v1 = write(uri, "2019-02", "run-1")
    v2 = write(uri, "2019-03", "run-1")
    assert find_record(uri, "2019-02", "run-1", after_version=0).version == v1
    assert find_record(uri, "2019-02", "run-1", after_version=v1) is None
    assert find_record(uri, "2019-03", "run-1", after_version=v1).version == v2


@pytest.mark.integration
def test_s3_records_and_state_checkpoint(s3_server, s3_bucket):
    options = s3_server.storage_options()
    uri = f"s3://{s3_bucket}/tables/events"
    assert read_records(uri, storage_options=options) == {}
    build(uri, options)
    assert summary(read_records(uri, storage_options=options)) == EXPECTED
    version = checkpoint(uri, storage_options=options)
    write(uri, "2019-02", "run-after", options=options)
    state = read_state(uri, storage_options=options)
    assert (state.state_version, state.commits_read) == (version, 1)
    assert summary(state.histories)["2019-02"] == ("run-after", None)
    keys = {o["Key"] for o in s3_server.boto3_client().list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert f"tables/events/{STATE_DIR}/{version:020d}.json" in keys


def test_a_rejection_is_committed_read_back_and_survives_a_state_checkpoint(tmp_path):
    from partitions_cases import source

    from partitions.staleness import PartitionState, plan

    uri = str(tmp_path / "events")
    write(uri, "2019-02", "run-1")
    refused = record("2019-02", "run-2", status="rejected", fingerprint="etag:b", error="unreadable bytes")
    version = record_failure(uri, refused, schema=SCHEMA, column=COLUMN)
    assert version == 2  # 0 creates the table, 1 writes, 2 is the empty commit carrying the rejection
    assert DeltaTable(uri).to_pyarrow_table().num_rows == 5, "the rejection keeps the previous version's rows"
    sources = {"2019-02": source("2019-02", "etag:b")}
    for reread in (read_records(uri), (write_state_checkpoint(uri), read_records(uri))[1]):
        history = reread["2019-02"]
        assert (history.latest_success.run_id, history.latest_failure.status) == ("run-1", "rejected")
        assert plan(sources, reread, code_version="code-1")[0].state is PartitionState.REJECTED


def damage(uri: str, version: int, how: str) -> Path:
    """Damage commit ``version`` as a partial copy (cut inside its first line) or an edit (a line that is not JSON)."""
    path = Path(uri) / "_delta_log" / f"{version:020d}.json"
    body = path.read_bytes()
    path.write_bytes(body[: len(body.splitlines()[0]) // 2] if how == "cut" else body.rstrip(b"\n") + b'\n{"add": \n')
    return path


@pytest.mark.parametrize("how", ["cut", "edit"])
def test_a_damaged_commit_is_named_by_file_and_line_by_the_reader_and_by_open_table(tmp_path, how):
    uri = str(tmp_path / "t")
    write(uri, "2019-02", "run-a")
    write(uri, "2019-03", "run-b")
    before = sorted(p.name for p in (tmp_path / "t" / "_delta_log").iterdir())
    intact = (tmp_path / "t" / "_delta_log" / f"{1:020d}.json").read_bytes().splitlines()
    damage(uri, 1, how)
    line = 1 if how == "cut" else len(intact) + 1  # the cut first line, or the line an edit appended
    where = f"_delta_log/{1:020d}.json line {line}"
    reason = "Expecting value" if how == "edit" else ""  # a cut line's reason depends on where the cut falls

    with pytest.raises(TableLogDamaged) as planned:
        read_records(uri)
    assert (planned.value.table_uri, planned.value.commit) == (uri, where)
    assert planned.value.detail.startswith(reason)
    assert str(planned.value).startswith(f"the Delta log of {uri} is damaged: {where} is not valid JSON ({reason}")
    assert "restore that file" in str(planned.value)

    with pytest.raises(TableLogDamaged) as opened:  # delta-rs's own reading, e.g. at a write's commit
        open_table(uri, partition="2019-03")
    assert (opened.value.commit, opened.value.partition) == (where, "2019-03")
    assert "Traceback" not in str(opened.value)
    assert "\n" not in str(opened.value)
    assert sorted(p.name for p in (tmp_path / "t" / "_delta_log").iterdir()) == before  # nothing written
