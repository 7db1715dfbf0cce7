"""S3 errors, cut connections and lost responses while reading and committing a month, through a fault proxy.

Every client of the pipeline (pyarrow for the source and the data files, delta-rs for commits, s3fs for the
log) talks to the S3 server through ``s3_proxy.Proxy``. A fault is either ridden out by the clients' retries
with backoff (the month completes, committed exactly once) or fails the month cleanly with a *transient* named
error (``SourceUnavailable``, ``StorageUnavailable``: the flow's task retries those with backoff): no partial
month is visible, the month plans stale, nothing is recorded against a good file, and the next try completes it.
Each case has one expected outcome (``Fault.expect``), and every fault is counted in requests by the proxy, not
in seconds, so the outcome does not depend on how fast the machine is.

Each case writes its own month of one shared bucket with ``steps.materialize_month`` under the faults, then records
the month's DuckDB checks (``steps.verify_month``) with the faults lifted: a month is fresh once its checks are.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import pytest
from reliability_cases import (
    Snapshot,
    log,
    month_rows,
    plan_states,
    published_month,
    put_source,
    s3_settings,
    snapshot,
)

from partitions import _storage
from partitions.errors import StorageUnavailable, Transient
from partitions.overwrite import app_id
from partitions.storage_errors import open_table
from taxi_assets.assets.trips import MonthResult, materialize_month, new_run_id, plan_months, verify_month
from taxi_assets.errors import SourceUnavailable
from taxi_assets.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("small_batches")]

ROWS_V1, ROWS_V2 = 200, 300


def source_get(month: str) -> str:
    return rf"/source/fhvhv_tripdata_{month}"


def commit_put(table: str) -> str:
    return rf"/{table}/_delta_log/0+[1-9]\d*\.json"  # a month's commit, not the table's CREATE


@pytest.fixture(scope="module")
def cfg(s3_server, proxy) -> Settings:
    """One bucket for the module; every client goes through the proxy."""
    return s3_settings(s3_server, s3_server.make_bucket("faults"), endpoint=proxy.endpoint)


def write(cfg: Settings, month: str, run_id: str | None = None, *, check: bool = True) -> MonthResult:
    """Materialize the month; with ``check``, also record its DuckDB checks, as ``run_month`` does.

    A faulted write runs with ``check=False`` and is checked by :func:`check` once the proxy is reset: the faults
    are aimed at the month's reads and commits, and a month counts as fresh only once its checks are recorded.
    """
    run_id = run_id or new_run_id()
    plan = plan_months(cfg, partitions=[month])
    result = materialize_month(plan.listing.files[month], cfg, run_id=run_id, code_version=plan.code_version)
    if check:
        verify_month(result, plan.listing.files[month], cfg, run_id=run_id)
    return result


def check(cfg: Settings, month: str, result: MonthResult, run_id: str) -> None:
    """The checks of a month ``write(..., check=False)`` committed, recorded as its run would."""
    source = plan_months(cfg, partitions=[month]).listing.files[month]
    assert all(c.passed for c in verify_month(result, source, cfg, run_id=run_id))


@dataclass(frozen=True)
class Fault:
    name: str
    month: str
    rules: tuple[dict, ...]  # Proxy.fail arguments, all armed at once
    expect: str = "ridden out"  # or "fails": a Transient error, everything whole; one outcome per case
    pyarrow_attempts: int = _storage.S3_MAX_ATTEMPTS  # fewer: an outage outlasts them sooner (backoff 1, 2, 4 s)
    upload_fails: bool = False  # the trips data-file upload fails: the writer itself names the error


# Every fault is counted in requests, not seconds: a cut refuses a fixed number of requests (the proxy's
# ``requests=n``), so whether the clients' retries outlast it does not depend on the machine's speed.
FAULTS = [
    Fault(
        "lost_response_of_the_trips_commit", "2021-01", (dict(fault="drop", method="PUT", path=commit_put("trips")),)
    ),
    Fault(
        "errors_on_every_kind_of_request",  # each below the clients' retry budget
        "2021-02",
        (
            dict(fault="error", status=500, method="GET", path=source_get("2021-02"), count=2),
            dict(fault="error", status=500, method="PUT|POST", path="trips/month%3D", count=2),
            dict(fault="drop", method="PUT|POST", path="quarantine/month%3D", count=2),
            dict(fault="error", method="PUT", path=commit_put("quarantine"), count=3),  # 503 SlowDown
            dict(fault="error", status=500, method="PUT", path=commit_put("trips"), count=3),
        ),
    ),
    Fault(
        "network_cut_for_2_requests_while_reading",
        "2021-03",
        (dict(fault="cut", method="GET", path=source_get("2021-03"), requests=2),),
    ),
    Fault(  # a commit PUT that got no answer is not re-sent (delta-rs cannot know it did not land): the month
        # fails with StorageUnavailable, which the flow's task retries; v1 stays whole meanwhile
        "network_cut_for_2_requests_at_the_trips_commit",
        "2021-04",
        (dict(fault="cut", method="PUT", path=commit_put("trips"), requests=2),),
        expect="fails",
    ),
    Fault(
        "network_cut_for_2_requests_after_the_trips_commit_landed",
        "2021-05",
        (dict(fault="cut", method="PUT", path=commit_put("trips"), requests=2, after=True),),
    ),
    Fault(
        "upload_errors_outlasting_the_retries",
        "2021-07",
        (dict(fault="error", status=500, method="PUT|POST", path="trips/month%3D", count=40),),
        expect="fails",
        pyarrow_attempts=2,
        upload_fails=True,
    ),
    Fault(
        "source_errors_outlasting_the_retries",
        "2021-06",
        (dict(fault="error", status=500, method="GET", path=source_get("2021-06"), count=40),),
        expect="fails",
        pyarrow_attempts=2,
    ),
]


def successes(cfg: Settings, name: str, month: str):
    return [c for c in log(cfg, name) if c.partition == month and c.status == "success"]


@pytest.mark.parametrize("fault", FAULTS, ids=lambda f: f.name)
def test_a_fault_is_ridden_out_or_fails_the_month_cleanly(cfg, proxy, fault, figure, monkeypatch):
    monkeypatch.setattr(_storage, "S3_MAX_ATTEMPTS", fault.pyarrow_attempts)
    month = fault.month
    if fault.expect == "fails":  # a previous version that a failure must leave whole
        put_source(cfg, month, published_month(month, ROWS_V1, seed=7))
        write(cfg, month)
    put_source(cfg, month, published_month(month, ROWS_V2, seed=12))
    before, planned = snapshot(cfg, month), plan_states(cfg)[month]
    trips_log = len(log(cfg, "trips"))
    proxy.reset()
    for rule in fault.rules:
        proxy.fail(**rule)
    run_id = f"run-{fault.name}"

    try:
        result = write(cfg, month, run_id, check=False)
        error = None
    except (SourceUnavailable, StorageUnavailable) as exc:
        result, error = None, exc
    faults = proxy.stats()["faults"]
    proxy.reset()
    if result is not None:
        check(cfg, month, result, run_id)

    assert sum(faults.values()) >= 1, "the fault fired"
    assert ("fails" if error is not None else "ridden out") == fault.expect, f"{fault.name}: {error!r}"
    if error is None:
        assert result is not None
        assert result.rows_source == ROWS_V2 == result.rows_written + result.rows_quarantined
        for name in ("trips", "quarantine"):
            commits = successes(cfg, name, month)
            assert [c.run_id for c in commits].count(run_id) == 1, f"{name}: {[c.run_id for c in commits]}"
            txns = [t["version"] for c in commits for t in c.txns if t["appId"] == app_id(month)]
            assert txns == list(range(1, len(commits) + 1))
        outcome = "ridden out: committed once"
    else:
        assert isinstance(error, Transient)
        if fault.upload_fails:  # raised where the upload happens (FileSeries), naming the table and the month
            assert isinstance(error, StorageUnavailable)
            assert (error.table_uri, error.partition) == (cfg.trips_uri, month)
            assert any(f.filename.endswith("parquet_files.py") for f in traceback.extract_tb(error.__traceback__))
            assert snapshot(cfg, month) == before, "the files started were deleted"
            assert len(log(cfg, "trips")) == trips_log, "nothing committed, no failure recorded"
        assert run_id not in [c.run_id for c in successes(cfg, "trips", month)]  # (the outage tests below: it is)
        assert snapshot(cfg, month).trips_files == before.trips_files  # readers keep v1 whole
        assert month_rows(cfg, "trips", month) == before.trips_rows
        if isinstance(error, SourceUnavailable):  # failed before any commit: nothing at all was written
            assert snapshot(cfg, month) == before
            assert len(log(cfg, "trips")) == trips_log, "no failure recorded against a good file"
            assert plan_states(cfg)[month] == planned
        state, reason = plan_states(cfg)[month]
        assert state in ("source-changed", "failed"), reason  # stale: the next run rebuilds it
        outcome = f"failed cleanly: {type(error).__name__} (transient), planned {state}; retry completed"
        write(cfg, month)  # what the flow's retry, or the next run, does
    assert plan_states(cfg)[month][0] == "fresh"
    assert month_rows(cfg, "trips", month) + month_rows(cfg, "quarantine", month) == ROWS_V2
    figure("transient", case=fault.name, outcome=outcome, faults=faults, rows_lost=0)


def outage_after_commit(
    cfg: Settings, proxy, month: str, table: str, run_id: str
) -> tuple[Snapshot, StorageUnavailable]:
    """v1 committed, v2 published; then ``table``'s commit of v2 lands, its answer is lost and the network stays
    down: the write must fail with StorageUnavailable. Returns the snapshot before it and the error, network up."""
    put_source(cfg, month, published_month(month, ROWS_V1, seed=7))
    write(cfg, month)
    put_source(cfg, month, published_month(month, ROWS_V2, seed=12))
    before = snapshot(cfg, month)
    proxy.reset()
    proxy.fail("cut", method="PUT", path=commit_put(table), after=True)  # down until told otherwise
    with pytest.raises(StorageUnavailable, match=month) as info:
        write(cfg, month, run_id, check=False)
    proxy.up()
    return before, info.value


@pytest.mark.slow
def test_an_outage_that_outlasts_every_retry_between_the_commits_fails_the_month_cleanly(cfg, proxy, figure):
    """The quarantine commit lands, its answer is lost and the network stays down: after the clients' retries
    the run fails with StorageUnavailable, readers keep trips v1 whole, the month plans incomplete, and the
    next run completes it."""
    month = "2021-11"
    before, error = outage_after_commit(cfg, proxy, month, "quarantine", "run-outage")

    assert isinstance(error, Transient)
    assert error.exit_code == 3
    assert snapshot(cfg, month).trips_files == before.trips_files
    assert month_rows(cfg, "trips", month) == before.trips_rows
    state, reason = plan_states(cfg)[month]
    assert (state, reason.split(" was ")[0]) == ("failed", "incomplete: companion table #1"), reason
    write(cfg, month)
    assert plan_states(cfg)[month][0] == "fresh"
    figure(
        "transient",
        case="network_down_for_good_after_the_quarantine_commit",
        outcome="failed cleanly: StorageUnavailable (transient), planned incomplete; next run completed",
        rows_lost=0,
    )


@pytest.mark.slow
def test_an_outage_that_outlasts_every_retry_after_the_trips_commit_landed_leaves_v2_whole(cfg, proxy, figure):
    """The trips commit lands, its answer is lost and the network stays down: the writer cannot find its own
    commit, so the run fails with StorageUnavailable, yet readers see the new month whole (both tables), the
    month plans failed until a run records its checks, and the next run rewrites it to the same rows."""
    month = "2021-10"
    before, error = outage_after_commit(cfg, proxy, month, "trips", "run-outage-after-trips")

    assert error.table_uri == cfg.trips_uri
    assert "run-outage-after-trips" in [c.run_id for c in successes(cfg, "trips", month)]
    landed = snapshot(cfg, month)
    assert landed.trips_files != before.trips_files
    assert month_rows(cfg, "trips", month) + month_rows(cfg, "quarantine", month) == ROWS_V2
    state, reason = plan_states(cfg)[month]
    assert state == "failed", reason
    write(cfg, month)
    assert plan_states(cfg)[month][0] == "fresh"
    assert month_rows(cfg, "trips", month) == landed.trips_rows
    assert month_rows(cfg, "trips", month) + month_rows(cfg, "quarantine", month) == ROWS_V2
    figure(
        "transient",
        case="network_down_for_good_after_the_trips_commit",
        outcome="failed cleanly: StorageUnavailable (transient), v2 visible whole, planned failed; next run completed",
        rows_lost=0,
    )


def test_a_lost_response_of_the_checks_commit_records_the_checks_once(cfg, proxy):
    """The checks append lands, its answer is lost: the retry finds the batch's app transaction and does not
    append the same results again (``verify.record_checks``)."""
    month = "2021-12"
    put_source(cfg, month, published_month(month, ROWS_V1, seed=7))
    result = write(cfg, month, "run-checks-lost", check=False)
    plan = plan_months(cfg, partitions=[month])
    proxy.reset()
    proxy.fail("drop", method="PUT", path=commit_put("checks"))

    checks = verify_month(result, plan.listing.files[month], cfg, run_id="run-checks-lost")

    assert proxy.stats()["faults"].get("drop", 0) == 1, "the answer of the checks commit was lost"
    table = open_table(cfg.checks_uri, storage_options=cfg.storage_options(cfg.checks_uri)).to_pyarrow_table()
    recorded = [row["check"] for row in table.to_pylist() if row["run_id"] == "run-checks-lost"]
    assert sorted(recorded) == sorted(c.check for c in checks), "each check recorded exactly once"
