import itertools
import json
import multiprocessing
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import CommitProperties, DeltaTable, write_deltalake
from partitions_cases import COLUMN, SCHEMA, month_rows, record, source, warm_up, write_at

from partitions.delta_log import read_records
from partitions.errors import CommitConflictExhausted, PartitionMismatch, StorageAccessDenied, Transient
from partitions.files import write_partition_file
from partitions.overwrite import (
    BACKOFF_CAP,
    MAX_ATTEMPTS,
    CommitStats,
    _commit,
    _commit_properties,
    app_id,
    backoff,
    commit_files,
    overwrite_partition,
    reconcile,
    record_failure,
)
from partitions.staleness import PartitionState, plan


@pytest.fixture(scope="module")
def pool():
    """Real separate processes (spawn: nothing inherited), started once for the module's concurrency tests."""
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        workers.map(warm_up, range(2))  # imports happen before the timed races
        yield workers


def rows_of(uri, options=None, key=None):
    table = DeltaTable(uri, storage_options=options).to_pyarrow_table()
    if key is not None:
        table = table.filter(pc.equal(table[COLUMN], key))
    return table.sort_by([(COLUMN, "ascending"), ("id", "ascending")])


def write(uri, key, run_id="run-1", n=10, **kwargs):
    return overwrite_partition(uri, month_rows(key, n), column=COLUMN, record=record(key, run_id, rows=n), **kwargs)


def commit_lines(uri, version):
    path = Path(uri) / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_commit_carries_rows_record_and_txn(tmp_path):
    uri = str(tmp_path / "events")
    version = write(uri, "2019-02")
    actions = commit_lines(uri, version)
    info = actions[0]["commitInfo"]
    assert info["partitions.partition"] == "2019-02"
    assert info["partitions.run_id"] == "run-1"
    assert [a["txn"] for a in actions if "txn" in a] == [{"appId": "partitions:2019-02", "version": 1}]
    assert sum("add" in a for a in actions) >= 1
    assert DeltaTable(uri).metadata().partition_columns == [COLUMN]
    assert rows_of(uri).equals(month_rows("2019-02").sort_by([(COLUMN, "ascending"), ("id", "ascending")]))
    assert read_records(uri)["2019-02"].latest_success == record("2019-02", version=version)


def test_rerun_is_idempotent_same_rows_same_counts(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")
    write(uri, "2019-03")
    before = rows_of(uri)
    v2 = write(uri, "2019-02", "run-2")
    assert rows_of(uri).equals(before)
    assert DeltaTable(uri).transaction_version(app_id("2019-02")) == 2
    assert read_records(uri)["2019-02"].latest_success.version == v2


def test_overwrite_replaces_only_its_own_partition(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02", n=10)
    write(uri, "2019-03", n=10)
    write(uri, "2019-02", "run-2", n=4)
    assert rows_of(uri, key="2019-02").num_rows == 4
    assert rows_of(uri, key="2019-03").num_rows == 10


def test_a_reader_is_spooled_and_an_empty_partition_clears_old_rows(tmp_path):
    uri = str(tmp_path / "side")
    overwrite_partition(
        uri, month_rows("2019-02", 6).to_reader(max_chunksize=2), column=COLUMN, record=record("2019-02", rows=6)
    )
    assert rows_of(uri).num_rows == 6
    overwrite_partition(uri, SCHEMA.empty_table(), column=COLUMN, record=record("2019-02", "run-2", rows=0))
    assert rows_of(uri).num_rows == 0
    assert read_records(uri)["2019-02"].latest_success.rows_written == 0


def test_rows_of_another_partition_are_refused_before_any_write(tmp_path):
    uri = str(tmp_path / "events")
    mixed = pa.concat_tables([month_rows("2019-02", 2), month_rows("2019-03", 1)])
    with pytest.raises(PartitionMismatch, match="1 rows of other partitions") as caught:
        overwrite_partition(uri, mixed, column=COLUMN, record=record("2019-02"))
    assert caught.value.partition == "2019-02"
    with pytest.raises(PartitionMismatch, match="no such column"):
        overwrite_partition(uri, mixed, column="day", record=record("2019-02"))


def test_record_failure_is_an_empty_commit_and_a_later_success_clears_it(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")
    before = rows_of(uri)
    failed = record("2019-02", "run-2", status="failed", error="source schema drift")
    version = record_failure(uri, failed, schema=SCHEMA, column=COLUMN)
    assert rows_of(uri).equals(before)
    assert [a for a in commit_lines(uri, version) if "add" in a or "remove" in a] == []
    src = {"2019-02": source("2019-02")}
    (row,) = plan(src, read_records(uri), code_version="code-1")
    assert (row.state, row.reason) == (PartitionState.FAILED, "last attempt failed (run run-2): source schema drift")
    write(uri, "2019-02", "run-3")
    (row,) = plan(src, read_records(uri), code_version="code-1")
    assert row.state is PartitionState.FRESH


def test_record_failure_creates_the_table_when_the_first_attempt_fails(tmp_path):
    uri = str(tmp_path / "events")
    version = record_failure(uri, record("2019-02", status="failed", error="x"), schema=SCHEMA, column=COLUMN)
    assert version == 1
    assert rows_of(uri).num_rows == 0
    with pytest.raises(ValueError, match="'failed' or 'rejected', not 'success'"):
        record_failure(uri, record("2019-02"), schema=SCHEMA, column=COLUMN)


def test_record_failure_commits_a_rejection_and_the_rows_stay(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")
    before = rows_of(uri)
    rejected = record("2019-02", "run-2", status="rejected", error="bad column")
    version = record_failure(uri, rejected, schema=SCHEMA, column=COLUMN)
    assert version == 2
    assert rows_of(uri).equals(before)
    found = read_records(uri)["2019-02"].latest_failure
    assert found is not None
    assert (found.run_id, found.status, found.error) == ("run-2", "rejected", "bad column")


def test_reconcile_finds_a_commit_whose_response_was_lost(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")
    rec = record("2019-02", "run-lost")
    calls = []

    def commit_then_lose_the_response(table):
        calls.append(table.version())
        write_deltalake(table, month_rows("2019-02"), mode="overwrite", predicate=f"{COLUMN} = '2019-02'")
        write_deltalake(
            table,
            SCHEMA.empty_table(),
            mode="append",
            commit_properties=CommitProperties(custom_metadata=rec.to_commit_metadata()),
        )
        raise ConnectionResetError("response lost after the commit landed")

    version = _commit(uri, rec, commit_then_lose_the_response, storage_options=None, max_attempts=3)
    assert len(calls) == 1, "a landed commit must not be repeated"
    assert version == DeltaTable(uri).version()
    assert reconcile(uri, rec, after_version=calls[0]) == version
    assert reconcile(uri, record("2019-02", "run-other"), after_version=calls[0]) is None
    assert reconcile(uri, rec, after_version=version) is None


def test_a_non_conflict_error_without_a_commit_is_raised_unchanged(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")

    def broken(table):
        raise ValueError("a bug, not the store")

    with pytest.raises(ValueError, match="a bug"):
        _commit(uri, record("2019-02", "run-x"), broken, storage_options=None, max_attempts=3)


def test_a_refused_write_is_named_and_not_transient(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")

    def refused(table):
        raise PermissionError(13, "Permission denied")

    with pytest.raises(StorageAccessDenied, match=r"2019-02: access to .*events was refused") as caught:
        _commit(uri, record("2019-02", "run-x"), refused, storage_options=None, max_attempts=3)
    assert not isinstance(caught.value, Transient)
    assert isinstance(caught.value.__cause__, PermissionError)


def test_conflicts_are_retried_then_reported_as_exhausted(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")
    stale = DeltaTable(uri)
    write(uri, "2019-02", "run-2")  # a concurrent writer wins: every commit from the stale snapshot conflicts
    attempts = []

    def from_stale_snapshot(_table):
        attempts.append(1)
        write_deltalake(stale, month_rows("2019-02"), mode="overwrite", predicate=f"{COLUMN} = '2019-02'")

    stats = CommitStats()
    with pytest.raises(CommitConflictExhausted, match="lost to concurrent writers 3 times") as caught:
        _commit(uri, record("2019-02", "run-3"), from_stale_snapshot, storage_options=None, max_attempts=3, stats=stats)
    assert (caught.value.partition, caught.value.attempts, len(attempts)) == ("2019-02", 3, 3)
    assert (stats.attempts, stats.conflicts, stats.commits) == (3, 3, 0)
    assert stats.backoff_seconds > 0, "two waits between the three attempts"
    assert rows_of(uri).num_rows == 10


def test_backoff_is_jittered_scaled_to_the_attempt_and_bounded():
    for slot, limit in [(0.0, 0.05), (0.01, 0.05), (0.3, 0.3), (5.0, 1.0)]:
        first = [backoff(1, slot=slot) for _ in range(200)]
        assert all(0 <= w <= limit for w in first)
        assert len(set(first)) > 100, "jittered: writers that lost together do not wake together"
    assert max(backoff(n, slot=0.3) for n in range(3, 40) for _ in range(20)) <= BACKOFF_CAP
    worst = sum(min(BACKOFF_CAP, 1.0 * 2 ** (n - 1)) for n in range(1, MAX_ATTEMPTS))
    assert worst <= 14, "the waits of one commit are bounded whatever the store's speed"


def test_eight_writers_committing_months_to_one_table_all_land_and_count_their_retries(tmp_path):
    """Eight month tasks, one table, one instant: delta-rs rebases the losers, nobody exhausts, nothing is lost."""
    uri = str(tmp_path / "events")
    write(uri, "2019-01")
    keys = [f"2020-{m:02d}" for m in range(1, 9)]
    rows = {k: 20 + i for i, k in enumerate(keys)}
    adds = {
        k: [write_partition_file(uri, month_rows(k, n), column=COLUMN, key=k, schema=SCHEMA)] for k, n in rows.items()
    }
    start = threading.Barrier(len(keys))
    done: dict[str, tuple[int, CommitStats, float, float]] = {}

    def month_task(key):
        stats = CommitStats()
        start.wait()
        began = time.perf_counter()
        rec = record(key, f"run-{key}", rows=rows[key])
        version = commit_files(uri, adds[key], column=COLUMN, record=rec, schema=SCHEMA, stats=stats)
        done[key] = (version, stats, began, time.perf_counter())

    threads = [threading.Thread(target=month_task, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == keys, "every month committed: none exhausted its attempts"
    assert sorted(v for v, *_ in done.values()) == list(range(2, 10)), "eight commits, one version each"
    total = CommitStats()
    for _, stats, *_ in done.values():
        total.merge(stats)
    assert total.commits == 8
    assert total.retries >= 1, f"eight writers from one snapshot: all but one lost a race ({total})"
    assert total.rebased_over >= total.rebased >= 1
    spans = sorted((began, ended) for _, _, began, ended in done.values())
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), f"commits overlapped: {spans}"
    recorded = read_records(uri)
    assert {k: recorded[k].latest_success.version for k in keys} == {k: done[k][0] for k in keys}
    counts = {c["values"]: c["counts"] for c in pc.value_counts(rows_of(uri)[COLUMN]).to_pylist()}
    assert counts == {"2019-01": 10, **rows}, "each partition holds exactly its own rows"


def test_a_lost_race_on_one_partition_is_retried_here_and_counted(tmp_path):
    """Two writers of one partition build their commits on one snapshot: the loser conflicts, backs off, wins."""
    uri = str(tmp_path / "events")
    write(uri, "2019-02")
    both_read = threading.Barrier(2)
    outcome: dict[str, tuple[int, CommitStats]] = {}

    def writer(run_id, n):
        adds = [write_partition_file(uri, month_rows("2019-02", n, start=n), column=COLUMN, key="2019-02")]
        rec = record("2019-02", run_id, rows=n)
        tries = []

        def attempt(table):
            tries.append(table.version())
            if len(tries) == 1:
                both_read.wait()  # both snapshots are taken before either commit is tried
            table.create_write_transaction(
                adds,
                mode="overwrite",
                schema=table.schema(),
                partition_by=[COLUMN],
                partition_filters=[(COLUMN, "=", "2019-02")],
                commit_properties=_commit_properties(table, rec),
            )

        stats = CommitStats()
        outcome[run_id] = (
            _commit(uri, rec, attempt, storage_options=None, max_attempts=MAX_ATTEMPTS, stats=stats),
            stats,
        )

    threads = [threading.Thread(target=writer, args=(f"run-{n}", n)) for n in (3, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (v3, s3), (v7, s7) = outcome["run-3"], outcome["run-7"]
    assert sorted([v3, v7]) == [2, 3]
    assert sorted([s3.conflicts, s7.conflicts]) == [0, 1], "exactly the loser retried, once"
    assert sorted([s3.attempts, s7.attempts]) == [1, 2]
    loser = s3 if s3.conflicts else s7
    assert loser.backoff_seconds > 0
    assert loser.retries == 1
    winner_rows = 7 if v7 > v3 else 3
    assert rows_of(uri).num_rows == winner_rows, "one copy: the later commit replaced the earlier one"
    assert DeltaTable(uri).transaction_version(app_id("2019-02")) == 3


def test_processes_writing_different_partitions_concurrently_all_succeed(tmp_path, pool):
    uri = str(tmp_path / "events")
    write(uri, "2019-01")  # the table exists; creation races are the next test's business
    start = time.time() + 0.5
    keys = ["2019-02", "2019-03"]
    versions = pool.map(write_at, [(uri, k, f"run-{k}", 50, start, None) for k in keys])
    assert len(set(versions)) == 2
    recorded = read_records(uri)
    assert {k: recorded[k].latest_success.version for k in keys} == dict(zip(keys, versions, strict=True))
    counts = pc.value_counts(rows_of(uri)[COLUMN]).to_pylist()
    assert {c["values"]: c["counts"] for c in counts} == {"2019-01": 10, "2019-02": 50, "2019-03": 50}


def test_processes_racing_on_one_partition_of_a_new_table_leave_exactly_one_copy(tmp_path, pool):
    uri = str(tmp_path / "events")
    start = time.time() + 0.5
    versions = pool.map(write_at, [(uri, "2019-02", f"run-{i}", 40, start, None) for i in range(2)])
    assert len(set(versions)) == 2
    assert rows_of(uri).num_rows == 40
    assert pc.count_distinct(rows_of(uri)["id"]).as_py() == 40
    latest = read_records(uri)["2019-02"].latest_success
    assert latest.version == max(versions)
    assert latest.run_id in {"run-0", "run-1"}
    assert DeltaTable(uri).transaction_version(app_id("2019-02")) == 2
    operations = [h["operation"] for h in DeltaTable(uri).history()]
    assert sorted(operations) == ["CREATE TABLE", "WRITE", "WRITE"], "one CREATE, however the creators raced"


def test_commit_files_replaces_a_partition_with_files_written_beforehand(tmp_path):
    uri = str(tmp_path / "events")
    write(uri, "2019-02")
    write(uri, "2019-03")
    batches = month_rows("2019-02", 30, start=100).to_batches(max_chunksize=10)
    adds = [write_partition_file(uri, [b], column=COLUMN, key="2019-02", schema=SCHEMA) for b in batches]
    version = commit_files(uri, adds, column=COLUMN, record=record("2019-02", "run-f", rows=30), schema=SCHEMA)
    got = rows_of(uri, key="2019-02")
    assert got.num_rows == 30
    assert pc.min(got["id"]).as_py() == 100
    assert rows_of(uri, key="2019-03").num_rows == 10
    assert read_records(uri)["2019-02"].latest_success.version == version
    stats = json.loads(adds[0].stats)
    assert stats["numRecords"] == 10
    assert stats["minValues"]["id"] == 100
    assert stats["nullCount"]["amount"] == 0
    assert COLUMN not in stats["minValues"]
    # statistics are used for file skipping: a filter on the timestamp still finds exactly its rows
    last = got.sort_by("at")["at"][-1].as_py()
    dataset = DeltaTable(uri).to_pyarrow_dataset()
    in_feb = pc.field(COLUMN) == "2019-02"
    assert dataset.to_table(filter=in_feb & (pc.field("at") >= pa.scalar(last, pa.timestamp("us")))).num_rows == 1
    assert dataset.to_table(filter=pc.field("id") >= 125).num_rows == 5


def test_commit_files_refuses_files_of_another_partition(tmp_path):
    uri = str(tmp_path / "events")
    add = write_partition_file(uri, month_rows("2019-03", 2), column=COLUMN, key="2019-03")
    with pytest.raises(PartitionMismatch, match="2019-03"):
        commit_files(uri, [add], column=COLUMN, record=record("2019-02"), schema=SCHEMA)


@pytest.mark.integration
def test_s3_table_overwrite_failure_and_concurrent_writers(s3_server, s3_bucket, pool):
    options = s3_server.storage_options()
    uri = f"s3://{s3_bucket}/tables/events"
    write(uri, "2019-02", storage_options=options)
    write(uri, "2019-02", "run-2", storage_options=options)
    record_failure(
        uri,
        record("2019-03", "run-3", status="failed", error="boom"),
        schema=SCHEMA,
        column=COLUMN,
        storage_options=options,
    )
    start = time.time() + 0.5
    versions = pool.map(write_at, [(uri, "2019-04", f"run-{i}", 20, start, options) for i in range(2)])
    assert len(set(versions)) == 2
    assert rows_of(uri, options, key="2019-02").num_rows == 10
    assert rows_of(uri, options, key="2019-04").num_rows == 20
    recorded = read_records(uri, storage_options=options)
    assert recorded["2019-02"].latest_success.run_id == "run-2"
    assert recorded["2019-03"].latest_failure.error == "boom"
    assert recorded["2019-03"].latest_success is None
    assert recorded["2019-04"].latest_success.version == max(versions)
