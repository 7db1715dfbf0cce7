import pickle

import pytest
from partitions_cases import record

from partitions.errors import (
    CommitConflictExhausted,
    DuplicatePartitionSource,
    InvalidPartitionKey,
    PartitionMismatch,
    PartitionsError,
    SourceListingError,
    TableLogDamaged,
    Transient,
)
from partitions.records import (
    KEY_PARTITION,
    KEY_ROWS_QUARANTINED,
    KEY_RUN_ID,
    MaterializationRecord,
    PartitionHistory,
    fold_records,
)


def test_record_round_trips_through_commit_metadata():
    original = record(
        "2019-02",
        rows_source=12,
        rows_quarantined=2,
        started_at="2024-01-01T00:00:00Z",
        upstream="run-0",
        extra={"domain.flags": "3"},
    )
    meta = original.to_commit_metadata()
    assert all(isinstance(k, str) and k.startswith("partitions.") for k in meta)
    assert all(isinstance(v, str) for v in meta.values())
    assert meta[KEY_PARTITION] == "2019-02"
    assert meta[KEY_ROWS_QUARANTINED] == "2"
    assert meta["partitions.extra.domain.flags"] == "3"
    back = MaterializationRecord.from_commit_metadata({**meta, "operation": "WRITE"}, 7)
    assert back == original.at_version(7)


def test_unset_counts_and_texts_stay_out_of_the_metadata():
    meta = record("2019-02").to_commit_metadata()
    assert KEY_ROWS_QUARANTINED not in meta
    assert "partitions.error" not in meta
    assert MaterializationRecord.from_commit_metadata(meta, 1).rows_quarantined is None


@pytest.mark.parametrize(
    "meta",
    [
        {"operation": "OPTIMIZE"},
        {KEY_PARTITION: "2019-02", "partitions.status": "maybe", KEY_RUN_ID: "r"},
        {KEY_PARTITION: "2019-99", "partitions.status": "success", KEY_RUN_ID: "r"},
        {KEY_PARTITION: "2019-02", "partitions.status": "success"},
    ],
)
def test_commits_without_a_valid_record_are_not_ours(meta):
    assert MaterializationRecord.from_commit_metadata(meta, 3) is None


def test_a_record_needs_a_real_month_a_known_status_and_a_run_id():
    with pytest.raises(InvalidPartitionKey):
        record("2019-13")
    with pytest.raises(ValueError, match="status"):
        record("2019-02", status="done")
    with pytest.raises(ValueError, match="run_id"):
        record("2019-02", run_id="")


def test_folding_keeps_the_latest_success_and_only_a_newer_failure():
    ok1, bad, ok2 = record("2019-02", "r1", version=1), record("2019-02", "r2", status="failed", version=2), None
    assert fold_records([ok1, bad])["2019-02"] == PartitionHistory(ok1, bad)
    ok2 = record("2019-02", "r3", version=3)
    folded = fold_records([ok1, bad, ok2, record("2019-03", "r4", version=4)])
    assert folded["2019-02"] == PartitionHistory(ok2, None)
    assert folded["2019-02"].latest == ok2
    assert set(folded) == {"2019-02", "2019-03"}


ERRORS = [
    InvalidPartitionKey("2019-13"),
    DuplicatePartitionSource("2019-02", ["a/x.parquet", "b/x.parquet"]),
    SourceListingError("s3://bucket/prefix", "timeout"),
    CommitConflictExhausted("s3://bucket/table", "2019-02", 5),
    PartitionMismatch("2019-02", "month", "'2019-03'"),
    TableLogDamaged("s3://bucket/table", "2019-02", "Unterminated string starting at", "_delta_log/x.json line 3"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_errors_pickle_with_their_facts_and_end_with_a_next_step(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert isinstance(error, PartitionsError)
    assert any(word in str(error) for word in ("re-run", "retry", "fix", "filter"))


def test_exit_codes_and_the_transient_marker():
    assert [e.exit_code for e in ERRORS] == [2, 3, 3, 4, 2, 2]
    assert [isinstance(e, Transient) for e in ERRORS] == [False, False, True, False, False, False]


def test_a_rejected_record_round_trips_and_old_statuses_parse_unchanged():
    rejected = record("2019-02", "r5", status="rejected", fingerprint="etag:bad", error="not parquet", version=5)
    assert (rejected.rejected, rejected.succeeded) == (True, False)
    meta = rejected.to_commit_metadata()
    assert meta["partitions.status"] == "rejected"
    assert MaterializationRecord.from_commit_metadata(meta, 5) == rejected
    for status in ("success", "failed"):  # records written before "rejected" existed read back as they were
        old = {KEY_PARTITION: "2019-02", "partitions.status": status, KEY_RUN_ID: "r1", "partitions.format": "1"}
        back = MaterializationRecord.from_commit_metadata(old, 1)
        assert back is not None
        assert (back.status, back.rejected) == (status, False)


def test_folding_a_rejection_between_successes_and_failures_keeps_only_the_newest_unsuccessful_attempt():
    ok = record("2019-02", "r1", version=1)
    rejected = record("2019-02", "r2", status="rejected", version=2)
    failed = record("2019-02", "r3", status="failed", version=3)
    assert fold_records([ok, rejected])["2019-02"] == PartitionHistory(ok, rejected)
    assert fold_records([ok, rejected, failed])["2019-02"] == PartitionHistory(ok, failed)
    assert fold_records([ok, failed, rejected])["2019-02"] == PartitionHistory(ok, rejected)
    later = record("2019-02", "r4", version=4)
    assert fold_records([rejected, later])["2019-02"] == PartitionHistory(later, None), "a later success wins"
