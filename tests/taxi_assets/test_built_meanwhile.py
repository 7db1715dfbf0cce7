"""Two runs that plan the same stale month: the one that waited for the month guard does not build it again when
the other built it from the same bytes and code since the waiter planned (issue 17.5's race: a `plan` taken as the
first run exits could land between the second's two commits of a month it was rewriting for nothing)."""

from __future__ import annotations

import pyarrow.parquet as pq
from builders import local_settings, write_months

from taxi_assets.assets.run_summary import RunSummary
from taxi_assets.assets.trips import (
    built_meanwhile,
    materialize_month,
    new_run_id,
    plan_months,
    run_month,
    verify_month,
)
from taxi_assets.model.code_version import trips_code_version

MONTH = "2019-02"


def test_a_month_another_run_built_since_our_plan_from_the_same_bytes_is_not_built_again(tmp_path):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, [MONTH], rows=300)
    plan = plan_months(cfg)
    (row,) = plan.rows
    assert row.last_run_id is None  # what our plan saw: no record yet
    source = plan.listing.files[MONTH]
    version = trips_code_version()

    assert built_meanwhile(source, cfg, run_id="ours", code_version=version, seen_run_id=None) is None
    other = run_month(source, cfg, run_id=new_run_id(), code_version=version)  # the other run builds it

    found = built_meanwhile(source, cfg, run_id="ours", code_version=version, seen_run_id=row.last_run_id)
    assert found is not None
    assert found.ok
    assert (found.rows_written, found.rows_quarantined, found.trips_version) == (
        other.rows_written,
        other.rows_quarantined,
        other.trips_version,
    )
    assert found.built_by != "ours"
    summary = RunSummary.of_plan(plan, run_id="ours")
    summary.results = [found]
    assert summary.written == []  # not ours to verify: its checks are the other run's

    (forced,) = plan_months(cfg, partitions=[MONTH]).rows  # a forced plan sees the other run's success ...
    assert forced.last_run_id == found.built_by
    again = built_meanwhile(
        source, cfg, run_id="ours", code_version=version, seen_run_id=forced.last_run_id, forced=True
    )
    assert again is None  # forced, and the success is the one the forced plan saw: built again
    assert built_meanwhile(source, cfg, run_id="ours", code_version=version, seen_run_id=None, forced=True) == found
    assert built_meanwhile(source, cfg, run_id="ours", code_version="another code", seen_run_id=None) is None


def test_other_bytes_are_built_again(tmp_path):
    cfg = local_settings(tmp_path)
    write_months(cfg.source, [MONTH], rows=300)
    source = plan_months(cfg).listing.files[MONTH]
    version = trips_code_version()
    run_month(source, cfg, run_id=new_run_id(), code_version=version)
    path = f"{cfg.source}/fhvhv_tripdata_{MONTH}.parquet"
    pq.write_table(pq.read_table(path).slice(0, 200), path)  # re-published while we waited
    changed = plan_months(cfg).listing.files[MONTH]
    assert changed.fingerprint != source.fingerprint
    assert built_meanwhile(changed, cfg, run_id="ours", code_version=version, seen_run_id=None) is None


def test_a_month_planned_between_the_other_runs_commit_and_its_checks_is_not_built_again(tmp_path):
    """The race issue 17.5's stress loop still found: the second run planned the month after the first had
    committed it but before it recorded its checks (stale as unverified, newest success already the first run's)."""
    cfg = local_settings(tmp_path)
    write_months(cfg.source, [MONTH], rows=300)
    version = trips_code_version()
    source = plan_months(cfg).listing.files[MONTH]
    first = new_run_id()
    written = materialize_month(source, cfg, run_id=first, code_version=version)  # trips committed, no checks yet
    (row,) = plan_months(cfg).rows  # the second run plans now
    assert row.state.is_stale
    assert "incomplete" in row.reason
    assert row.last_run_id == first
    assert built_meanwhile(source, cfg, run_id="ours", code_version=version, seen_run_id=row.last_run_id) is None

    verify_month(written, source, cfg, run_id=first)  # the first run records its checks, then releases the month
    found = built_meanwhile(source, cfg, run_id="ours", code_version=version, seen_run_id=row.last_run_id)
    assert found is not None
    assert (found.built_by, found.trips_version) == (first, written.trips_version)
