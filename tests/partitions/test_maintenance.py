from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable
from partitions_cases import COLUMN, SCHEMA, month_rows, record

from partitions.delta_log import STATE_DIR, read_records, read_state
from partitions.files import write_partition_file
from partitions.maintenance import checkpoint, compact, vacuum
from partitions.overwrite import commit_files


def write_in_pieces(uri, key, run_id, pieces=4, n=5):
    """One partition as ``pieces`` small files, committed at once: what compaction exists for."""
    batches = month_rows(key, pieces * n).to_batches(max_chunksize=n)
    adds = [write_partition_file(uri, [b], column=COLUMN, key=key, schema=SCHEMA) for b in batches]
    rec = record(key, run_id, rows=pieces * n)
    return commit_files(uri, adds, column=COLUMN, record=rec, schema=SCHEMA)


def counts(uri):
    table = DeltaTable(uri).to_pyarrow_table()
    return {c["values"]: c["counts"] for c in pc.value_counts(table[COLUMN]).to_pylist()}


def test_checkpoint_writes_delta_and_state_checkpoints_at_one_version(tmp_path):
    uri = str(tmp_path / "events")
    write_in_pieces(uri, "2019-02", "run-1")
    write_in_pieces(uri, "2019-03", "run-2")
    version = checkpoint(uri)
    assert (Path(uri) / "_delta_log" / f"{version:020d}.checkpoint.parquet").is_file()
    state = read_state(uri)
    assert (state.state_version, state.commits_read) == (version, 0)


def test_compact_keeps_rows_and_records(tmp_path):
    uri = str(tmp_path / "events")
    write_in_pieces(uri, "2019-02", "run-1")
    write_in_pieces(uri, "2019-03", "run-2")
    before_rows, before_records = counts(uri), read_records(uri)
    files_before = len(DeltaTable(uri).file_uris())
    metrics = compact(uri, partition="2019-02")
    assert metrics["numFilesRemoved"] > 1
    assert len(DeltaTable(uri).file_uris()) < files_before
    compact(uri)
    assert counts(uri) == before_rows == {"2019-02": 20, "2019-03": 20}
    assert read_records(uri) == before_records


def test_vacuum_removes_only_files_no_current_version_needs(tmp_path):
    uri = str(tmp_path / "events")
    write_in_pieces(uri, "2019-02", "run-1")
    write_in_pieces(uri, "2019-02", "run-2")
    write_in_pieces(uri, "2019-03", "run-3")
    checkpoint(uri)
    current = set(DeltaTable(uri).file_uris())
    listed = vacuum(uri, retention_hours=0, enforce_retention_duration=False)
    assert listed, "the first run's files are unreferenced"
    assert all(Path(uri, f).exists() for f in listed), "dry run by default"
    removed = vacuum(uri, retention_hours=0, dry_run=False, enforce_retention_duration=False)
    assert sorted(removed) == sorted(listed)
    assert set(DeltaTable(uri).file_uris()) == current
    assert all(Path(u).exists() for u in current)
    assert counts(uri) == {"2019-02": 20, "2019-03": 20}
    assert any((Path(uri) / STATE_DIR).iterdir()), "vacuum leaves the state checkpoints alone"
    assert read_records(uri)["2019-02"].latest_success.run_id == "run-2"


def test_vacuum_keeps_the_default_retention(tmp_path):
    uri = str(tmp_path / "events")
    write_in_pieces(uri, "2019-02", "run-1")
    write_in_pieces(uri, "2019-02", "run-2")
    assert vacuum(uri) == []  # files removed minutes ago are within the 7-day retention


def test_checkpoint_keeps_only_the_newest_state_checkpoints(tmp_path):
    uri = str(tmp_path / "events")
    versions = []
    for i in range(4):
        write_in_pieces(uri, "2019-02", f"run-{i}", pieces=1)
        versions.append(checkpoint(uri, keep_states=2))
    kept = sorted(p.name for p in (Path(uri) / STATE_DIR).glob("0*.json"))
    assert kept == [f"{v:020d}.json" for v in versions[-2:]]
    assert read_records(uri)["2019-02"].latest_success.run_id == "run-3"
