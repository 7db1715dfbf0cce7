import pytest
from partitions_cases import history, record, source

from partitions.records import fold_records
from partitions.staleness import PartitionState, PlanRow, Verifications, plan, upstream_sources

S = PartitionState


def one(sources, recorded, **kwargs):
    kwargs.setdefault("code_version", "code-1")
    (row,) = plan(sources, recorded, **kwargs)
    return row


def test_never_materialized_is_missing():
    row = one({"2019-02": source("2019-02")}, {})
    assert row == PlanRow("2019-02", S.MISSING, "never materialized", "mem://2019-02", "etag:a")
    assert row.state.is_stale


def test_same_source_and_code_is_fresh_with_the_recorded_facts():
    ok = record("2019-02", "run-9", version=4)
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(ok)})
    assert row.state is S.FRESH
    assert not row.state.is_stale
    assert row.reason == "up to date since run run-9 (version 4)"
    assert (row.rows, row.recorded_code_version, row.last_run_id, row.recorded_fingerprint) == (
        10,
        "code-1",
        "run-9",
        "etag:a",
    )


def test_a_new_source_fingerprint_is_source_changed():
    row = one({"2019-02": source("2019-02", "etag:b")}, {"2019-02": history(record("2019-02"))})
    assert row.state is S.SOURCE_CHANGED
    assert row.reason == "source fingerprint changed: 'etag:a' -> 'etag:b'"


def test_a_code_version_bump_marks_every_partition_code_changed():
    keys = ["2019-02", "2019-03", "2019-04"]
    sources = {k: source(k) for k in keys}
    recorded = {k: history(record(k)) for k in keys}
    assert {r.state for r in plan(sources, recorded, code_version="code-1")} == {S.FRESH}
    rows = plan(sources, recorded, code_version="code-2")
    assert [r.state for r in rows] == [S.CODE_CHANGED] * 3
    assert rows[0].reason == "code version changed: 'code-1' -> 'code-2'"


def test_source_and_code_both_changed_reports_both_as_source_changed():
    row = one({"2019-02": source("2019-02", "etag:b")}, {"2019-02": history(record("2019-02"))}, code_version="c2")
    assert row.state is S.SOURCE_CHANGED
    assert "source fingerprint changed" in row.reason
    assert "code version changed" in row.reason


def test_a_failed_attempt_is_planned_failed_with_its_error_and_a_later_success_clears_it():
    failed = record("2019-02", "run-2", status="failed", error="schema drift in column fare")
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(record("2019-02"), failed)})
    assert row.state is S.FAILED
    assert row.reason == "last attempt failed (run run-2): schema drift in column fare"
    assert row.last_run_id == "run-2"
    cleared = one({"2019-02": source("2019-02")}, {"2019-02": history(record("2019-02", "run-3"))})
    assert cleared.state is S.FRESH


def test_a_failure_with_no_success_ever_is_failed_not_missing():
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(None, record("2019-02", status="failed"))})
    assert row.state is S.FAILED
    assert row.rows is None


def test_a_gone_source_is_orphaned_reported_and_kept():
    row = one({}, {"2019-02": history(record("2019-02"))})
    assert row.state is S.ORPHANED
    assert not row.state.is_stale
    assert row.reason == "source file is gone but a success is recorded; the table keeps its rows"
    assert row.rows == 10
    assert one({}, {"2019-02": history(record("2019-02"))}, force=["2019-02"]).state is S.ORPHANED


def test_forced_wins_over_fresh_and_failed_with_the_default_or_a_given_reason():
    recorded = {"2019-02": history(record("2019-02")), "2019-03": history(None, record("2019-03", status="failed"))}
    sources = {k: source(k) for k in recorded}
    rows = plan(sources, recorded, code_version="code-1", force=["2019-02", "2019-03"])
    assert [(r.state, r.reason) for r in rows] == [(S.FORCED, "forced by selection")] * 2
    row = one({"2019-02": source("2019-02")}, recorded, force={"2019-02": "reprocess requested"}, only=["2019-02"])
    assert (row.state, row.reason) == (S.FORCED, "reprocess requested")


def test_only_restricts_rows_and_rows_are_sorted():
    sources = {k: source(k) for k in ["2019-04", "2019-02", "2019-03"]}
    assert [r.partition for r in plan(sources, {}, code_version="c")] == ["2019-02", "2019-03", "2019-04"]
    assert [r.partition for r in plan(sources, {}, code_version="c", only=["2019-03", "2030-01"])] == ["2019-03"]


def test_a_source_problem_fails_that_partition_alone():
    sources = {"2019-03": source("2019-03")}
    rows = plan(sources, {}, code_version="c", source_problems={"2019-02": "2 source files map to this partition"})
    assert [(r.partition, r.state) for r in rows] == [("2019-02", S.FAILED), ("2019-03", S.MISSING)]
    assert rows[0].reason == "source cannot be used: 2 source files map to this partition"


PRIMARY = record("2019-02", "run-5", rows=8, rows_source=10, rows_quarantined=2)


@pytest.mark.parametrize(
    ("companion", "reason"),
    [
        (None, "incomplete: companion table #1 has no success for run run-5"),
        (
            record("2019-02", "run-4", rows=2),
            "incomplete: companion table #1 was last written by run run-4, the primary by run run-5",
        ),
        (
            record("2019-02", "run-5", rows=3),
            "incomplete: companion tables hold 3 rows but run run-5 quarantined 2",
        ),
    ],
)
def test_a_primary_success_without_its_matching_companion_is_incomplete(companion, reason):
    companions = [{"2019-02": history(companion)}] if companion else [{}]
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(PRIMARY)}, companions=companions)
    assert (row.state, row.reason) == (S.FAILED, reason)


def test_a_primary_with_its_matching_companion_is_fresh():
    companions = [{"2019-02": history(record("2019-02", "run-5", rows=2))}]
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(PRIMARY)}, companions=companions)
    assert row.state is S.FRESH


def test_rows_not_conserved_is_incomplete():
    leaky = record("2019-02", "run-6", rows=7, rows_source=10, rows_quarantined=2)
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(leaky)})
    assert row.state is S.FAILED
    assert row.reason == "incomplete: rows not conserved in run run-6: 10 read != 7 written + 2 quarantined"


def test_downstream_is_source_changed_once_its_upstream_is_rematerialized():
    upstream = {
        "2019-02": history(record("2019-02", "up-1")),
        "2019-03": history(None, record("2019-03", status="failed")),
    }
    sources = upstream_sources(upstream, table="s3://bucket/clean")
    assert list(sources) == ["2019-02"]
    assert sources["2019-02"].uri == "upstream:s3://bucket/clean"
    assert sources["2019-02"].fingerprint == "up-1"
    downstream = {"2019-02": history(record("2019-02", "down-1", fingerprint="up-1", upstream="up-1"))}
    assert one(sources, downstream).state is S.FRESH
    rebuilt = upstream_sources({"2019-02": history(record("2019-02", "up-2"))}, table="s3://bucket/clean")
    row = one(rebuilt, downstream)
    assert (row.state, row.reason) == (S.SOURCE_CHANGED, "source fingerprint changed: 'up-1' -> 'up-2'")


def test_a_single_key_string_is_one_key_not_its_characters():
    sources = {k: source(k) for k in ["2019-02", "2019-03"]}
    recorded = {k: history(record(k, "run-1")) for k in sources}
    rows = plan(sources, recorded, code_version="c", force="2019-02", only="2019-02")
    assert [(r.partition, r.state) for r in rows] == [("2019-02", S.FORCED)]


def test_a_forced_month_never_materialized_reads_missing_and_says_it_was_named():
    sources = {k: source(k) for k in ["2019-02", "2019-03"]}
    rows = plan(sources, {}, code_version="c", force={"2019-02": "named in partitions"})
    assert [(r.partition, r.state, r.reason) for r in rows] == [
        ("2019-02", S.MISSING, "never materialized (named in partitions)"),
        ("2019-03", S.MISSING, "never materialized"),
    ]
    assert all(r.state.is_stale for r in rows)


def test_a_success_no_verification_attests_is_incomplete_until_one_does():
    """A run that died between its commit and its checks left a whole month nobody checked."""
    written = record("2019-02", "run-7", version=3)
    sources, recorded = {"2019-02": source("2019-02")}, {"2019-02": history(written)}

    unchecked = one(sources, recorded, verifications=Verifications({}))
    older_check = one(sources, recorded, verifications=Verifications({"2019-02": history(record("2019-02", "run-6"))}))
    checked = one(sources, recorded, verifications=Verifications({"2019-02": history(record("2019-02", "run-7"))}))
    failed_check = one(
        sources,
        recorded,
        verifications=Verifications({"2019-02": history(None, record("2019-02", "run-7", status="failed"))}),
    )

    assert unchecked.state is S.FAILED
    assert unchecked.reason == "incomplete: run run-7 committed it but recorded no verification"
    assert older_check.state is S.FAILED
    assert checked.state is S.FRESH
    assert failed_check.state is S.FRESH, "attested (the failed check's own failure record fails the month)"


def test_an_older_verification_of_the_write_in_place_is_looked_up_when_another_run_verified_last():
    """Concurrent runs: A commits, B commits and verifies, A verifies last; B's write is attested all the same."""
    sources, recorded = {"2019-02": source("2019-02")}, {"2019-02": history(record("2019-02", "run-b"))}
    asked: list[tuple[str, str]] = []

    def lookup(attests: set[str]):
        def attested_by(key: str, run_id: str) -> bool:
            asked.append((key, run_id))
            return run_id in attests

        return attested_by

    late_a = {"2019-02": history(record("2019-02", "run-a"))}
    found = one(sources, recorded, verifications=Verifications(late_a, attested_by=lookup({"run-a", "run-b"})))
    lost = one(sources, recorded, verifications=Verifications(late_a, attested_by=lookup({"run-a"})))
    own = one(sources, recorded, verifications=Verifications(recorded, attested_by=lookup(set())))

    assert (found.state, lost.state, own.state) == (S.FRESH, S.FAILED, S.FRESH)
    assert asked == [("2019-02", "run-b")] * 2, "asked only when the latest verification is another run's"


def test_verifications_only_judge_the_successes_that_promise_one_and_only_fresh_ones():
    legacy, promised = record("2019-02", "run-1"), record("2019-03", "run-2", extra={"checks": "yes"})
    sources = {"2019-02": source("2019-02"), "2019-03": source("2019-03", "etag:new")}
    rows = plan(
        sources,
        {"2019-02": history(legacy), "2019-03": history(promised)},
        code_version="code-1",
        verifications=Verifications({}, required=lambda r: "checks" in r.extra),
    )

    assert [(r.partition, r.state) for r in rows] == [("2019-02", S.FRESH), ("2019-03", S.SOURCE_CHANGED)]


# -- rejected: refused as it is, left alone until something changes --------------------------------------------


def rejection(key="2019-02", run_id="run-r", *, fingerprint="etag:a", code="code-1", error="not a parquet file"):
    return record(key, run_id, status="rejected", fingerprint=fingerprint, code=code, error=error)


def test_a_rejection_of_the_same_source_and_code_is_rejected_not_stale_with_its_reason():
    for success in (None, record("2019-02", "run-1")):  # never written, or an older version kept
        row = one({"2019-02": source("2019-02")}, {"2019-02": history(success, rejection())})
        assert row.state is S.REJECTED
        assert not row.state.is_stale
        assert not row.state.is_problem, "a rejected month is reported, not a reason to fail the run"
        assert row.reason == (
            "rejected by run run-r; not retried until the source file or the code changes: not a parquet file"
        )
        assert row.last_run_id == "run-r"
        assert row.rows == (10 if success else None), "the rows of the kept version are still reported"


@pytest.mark.parametrize(
    ("current", "code", "state", "reason"),
    [
        (
            "etag:b",
            "code-1",
            S.SOURCE_CHANGED,
            "source fingerprint changed: 'etag:a' -> 'etag:b' since run run-r rejected it",
        ),
        ("etag:a", "code-2", S.CODE_CHANGED, "code version changed: 'code-1' -> 'code-2' since run run-r rejected it"),
        (
            "etag:b",
            "code-2",
            S.SOURCE_CHANGED,
            "source fingerprint changed: 'etag:a' -> 'etag:b'; code version changed: 'code-1' -> 'code-2' "
            "since run run-r rejected it",
        ),
    ],
)
def test_a_new_fingerprint_or_code_version_retries_a_rejected_partition(current, code, state, reason):
    row = one({"2019-02": source("2019-02", current)}, {"2019-02": history(None, rejection())}, code_version=code)
    assert (row.state, row.reason) == (state, reason)
    assert row.state.is_stale


def test_naming_a_rejected_partition_in_force_retries_it():
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(None, rejection())}, force=["2019-02"])
    assert (row.state, row.reason) == (S.FORCED, "forced by selection")


def test_a_transient_failure_stays_failed_and_is_retried_even_after_a_rejection():
    failed = record("2019-02", "run-t", status="failed", error="store did not answer")
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(None, failed)})
    assert (row.state, row.state.is_stale) == (S.FAILED, True)
    # the newest unsuccessful attempt speaks: a failure after a rejection is retried
    histories = fold_records([rejection(), failed])
    assert one({"2019-02": source("2019-02")}, histories).state is S.FAILED


def test_a_later_success_wins_over_an_older_rejection():
    histories = fold_records([rejection(), record("2019-02", "run-ok", version=3)])
    row = one({"2019-02": source("2019-02")}, histories)
    assert (row.state, row.reason) == (S.FRESH, "up to date since run run-ok (version 3)")


def test_a_rejection_without_a_recorded_fingerprint_is_retried():
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(None, rejection(fingerprint=""))})
    assert row.state is S.FAILED
    assert row.reason.startswith("last attempt rejected (run run-r) but recorded no source fingerprint")


def test_a_rejected_partition_whose_source_is_gone_is_orphaned_and_says_so():
    row = one({}, {"2019-02": history(None, rejection())})
    assert (row.state, row.reason) == (
        S.ORPHANED,
        "source file is gone but only a rejected attempt is recorded; the table keeps its rows",
    )


def test_downstream_of_a_rejected_upstream_stays_fresh_on_the_rows_it_was_built_from():
    """The upstream rejection left the upstream rows as they were: nothing downstream to rebuild."""
    upstream = fold_records([record("2019-02", "up-1", version=1), rejection(run_id="up-2", fingerprint="etag:z")])
    upstream |= {"2019-03": history(None, rejection("2019-03", "up-3"))}  # never succeeded: no downstream source
    sources = upstream_sources(upstream, table="clean")
    assert list(sources) == ["2019-02"]
    assert sources["2019-02"].fingerprint == "up-1"
    downstream = {"2019-02": history(record("2019-02", "down-1", fingerprint="up-1"))}
    assert [(r.partition, r.state) for r in plan(sources, downstream, code_version="code-1")] == [("2019-02", S.FRESH)]


def test_a_rejected_downstream_attempt_waits_for_its_upstream_to_be_rebuilt():
    """A downstream rejection records the upstream run id as its fingerprint: the same upstream is refused again."""
    downstream = {"2019-02": history(None, rejection(run_id="down-r", fingerprint="up-1"))}
    same = upstream_sources({"2019-02": history(record("2019-02", "up-1"))})
    rebuilt = upstream_sources({"2019-02": history(record("2019-02", "up-2"))})
    assert one(same, downstream).state is S.REJECTED
    row = one(rebuilt, downstream)
    assert (row.state, row.reason) == (
        S.SOURCE_CHANGED,
        "source fingerprint changed: 'up-1' -> 'up-2' since run down-r rejected it",
    )


def test_which_states_are_stale_and_which_are_problems():
    assert {s for s in S if s.is_stale} == {S.MISSING, S.SOURCE_CHANGED, S.CODE_CHANGED, S.FAILED, S.FORCED}
    assert {s for s in S if s.is_problem} == {S.UNAVAILABLE}


# -- data files the log references but the store lost ---------------------------------------------------------

GONE = ["month=2019-02/part-1.parquet", "month=2019-02/part-2.parquet", "month=2019-02/part-3.parquet", "x/4"]


def test_a_partition_whose_data_files_are_gone_plans_failed_naming_a_few_of_them():
    row = one({"2019-02": source("2019-02")}, {"2019-02": history(record("2019-02"))}, missing_files={"2019-02": GONE})
    assert (row.state, row.state.is_stale) == (S.FAILED, True)
    assert row.reason == (
        "data files referenced by the log are gone: month=2019-02/part-1.parquet, month=2019-02/part-2.parquet, "
        "month=2019-02/part-3.parquet (+1 more); the next run rewrites the partition"
    )
    healthy = one({"2019-02": source("2019-02")}, {"2019-02": history(record("2019-02"))}, missing_files={})
    assert healthy.state is S.FRESH


def test_gone_data_files_next_to_a_force_a_rejection_or_a_gone_source():
    recorded = {"2019-02": history(record("2019-02"), rejection())}
    gone = {"2019-02": GONE[:1]}
    forced = one({"2019-02": source("2019-02")}, recorded, missing_files=gone, force=["2019-02"])
    assert forced.state is S.FORCED
    rejected = one({"2019-02": source("2019-02")}, recorded, missing_files=gone)
    assert rejected.state is S.REJECTED, "its source cannot rebuild it: retrying would only be refused again"
    assert rejected.reason.endswith("; and data files referenced by the log are gone: month=2019-02/part-1.parquet")
    orphaned = one({}, {"2019-02": history(record("2019-02"))}, missing_files=gone)
    assert (orphaned.state, orphaned.reason) == (
        S.ORPHANED,
        "source file is gone but a success is recorded; data files referenced by the log are gone: "
        "month=2019-02/part-1.parquet, so those rows are lost",
    )
