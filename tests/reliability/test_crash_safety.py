"""A worker killed with SIGKILL at each point of a month's write: nothing visible is half-done, the month plans
stale until both tables are complete, the next run completes it, and vacuum removes the orphaned files.

The worker is ``driver.py crash`` (``taxi-assets materialize`` with a kill switch) in its own process. The month
already holds version 1 (600 rows) and its source was replaced by version 2 (900 rows), so a reader can tell
the two apart: every count it sees must be wholly version 1 or wholly version 2.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_cases import (
    MONTH,
    OTHER,
    local_settings,
    materialize,
    month_rows,
    plan_states,
    published_month,
    put_source,
    referenced_files,
    s3_settings,
    stored_files,
    write_file,
)

from partitions.maintenance import vacuum
from taxi_assets.settings import Settings

DRIVER = Path(__file__).with_name("driver.py")
V1_ROWS, V2_ROWS = 600, 900


def kill_at(cfg: Settings, point: str, *, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAXI_ASSETS_"))}
    environ.update(env or {}, TAXI_ASSETS_SOURCE=cfg.source, TAXI_ASSETS_SINK=cfg.sink)
    return subprocess.run(
        [sys.executable, str(DRIVER), "crash", MONTH, point],
        env=environ,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def counts(cfg: Settings) -> tuple[int, int]:
    return month_rows(cfg, "trips", MONTH), month_rows(cfg, "quarantine", MONTH)


@pytest.fixture(scope="module")
def versions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A warehouse holding MONTH v1 and OTHER, and the (trips, quarantine) counts of v1 and v2 of MONTH."""
    root = tmp_path_factory.mktemp("crash-base")
    cfg = local_settings(root)
    write_file(cfg.source, OTHER, published_month(OTHER, 300, seed=8))
    materialize(cfg, OTHER)
    probe = local_settings(tmp_path_factory.mktemp("crash-v2"))  # v2's counts, from a warehouse of its own
    write_file(probe.source, MONTH, published_month(MONTH, V2_ROWS, seed=12))
    v2 = materialize(probe, MONTH)
    first_time = tmp_path_factory.mktemp("crash-first")
    shutil.copytree(root, first_time, dirs_exist_ok=True)
    write_file(cfg.source, MONTH, published_month(MONTH, V1_ROWS, seed=7))
    v1 = materialize(cfg, MONTH)
    return {
        "root": root,
        "first_time": first_time,
        "v1": (v1.rows_written, v1.rows_quarantined),
        "v2": (v2.rows_written, v2.rows_quarantined),
        "none": (0, 0),
    }


# point -> what readers see right after the kill (trips, quarantine), and the planned state
AFTER_KILL = {
    "reading": ("v1", "v1", "source-changed"),
    "files_written": ("v1", "v1", "source-changed"),
    "between_commits": ("v1", "v2", "failed"),
    "after_trips_commit": ("v2", "v2", "failed"),  # whole, but never checked: the next run rebuilds and checks it
}


def check_recovery(cfg: Settings, versions: dict, figure, *, case: str, point: str, killed: tuple) -> None:
    """Next run completes the month if it is stale; vacuum then leaves only referenced files."""
    state = plan_states(cfg)[MONTH][0]
    if state != "fresh":
        materialize(cfg, MONTH)
    assert counts(cfg) == versions["v2"]
    assert plan_states(cfg)[MONTH][0] == "fresh"
    assert plan_states(cfg)[OTHER][0] == "fresh"
    orphans = {name: stored_files(cfg, name) - referenced_files(cfg, name) for name in ("trips", "quarantine")}
    removed = []
    for name in ("trips", "quarantine"):
        uri = f"{cfg.sink}/{name}"
        removed += vacuum(
            uri,
            retention_hours=0,
            enforce_retention_duration=False,
            dry_run=False,
            storage_options=cfg.storage_options(uri),
        )
        assert stored_files(cfg, name) == referenced_files(cfg, name)
    assert len(removed) >= sum(len(v) for v in orphans.values())
    assert counts(cfg) == versions["v2"]
    assert month_rows(cfg, "trips", OTHER) > 0
    figure(
        "kill_point",
        case=case,
        point=point,
        seen_after_kill=killed,
        planned_after_kill=state,
        unreferenced=sum(len(v) for v in orphans.values()),
        vacuumed=len(removed),
        rows_lost=0,
    )


@pytest.mark.parametrize("point", list(AFTER_KILL))
def test_a_worker_killed_while_rebuilding_a_month_leaves_a_whole_version(versions, point, tmp_path, figure):
    shutil.copytree(versions["root"], tmp_path / "w")
    cfg = local_settings(tmp_path / "w")
    write_file(cfg.source, MONTH, published_month(MONTH, V2_ROWS, seed=12))
    stored_before = stored_files(cfg, "trips")

    done = kill_at(cfg, point)

    assert done.returncode == -signal.SIGKILL, done.stderr[-2_000:]
    trips_seen, quarantine_seen, planned = AFTER_KILL[point]
    assert counts(cfg) == (versions[trips_seen][0], versions[quarantine_seen][1])
    state, reason = plan_states(cfg)[MONTH]
    assert state == planned, reason
    if point == "between_commits":
        assert reason.startswith("incomplete: companion table #1 was last written by run")
    if point == "after_trips_commit":
        assert re.fullmatch(r"incomplete: run \w+ committed it but recorded no verification", reason), reason
    if point in ("files_written", "between_commits"):
        assert stored_files(cfg, "trips") - referenced_files(cfg, "trips") - stored_before, "orphaned data files"
    check_recovery(cfg, versions, figure, case="rebuild", point=point, killed=(trips_seen, quarantine_seen, planned))


def test_a_worker_killed_between_the_commits_of_a_first_materialization(versions, tmp_path, figure):
    shutil.copytree(versions["first_time"], tmp_path / "w")
    cfg = local_settings(tmp_path / "w")
    write_file(cfg.source, MONTH, published_month(MONTH, V2_ROWS, seed=12))

    done = kill_at(cfg, "between_commits")

    assert done.returncode == -signal.SIGKILL, done.stderr[-2_000:]
    assert month_rows(cfg, "trips", MONTH) == 0  # readers see no month, not a half month
    assert plan_states(cfg)[MONTH][0] == "missing"
    check_recovery(cfg, versions, figure, case="first_time", point="between_commits", killed=("none", "v2", "missing"))


@pytest.mark.slow
@pytest.mark.integration
def test_a_worker_killed_between_the_commits_on_s3(s3_server, s3_bucket, versions, figure):
    cfg = s3_settings(s3_server, s3_bucket)
    put_source(cfg, OTHER, published_month(OTHER, 300, seed=8))
    put_source(cfg, MONTH, published_month(MONTH, V1_ROWS, seed=7))
    materialize(cfg, OTHER)
    materialize(cfg, MONTH)
    put_source(cfg, MONTH, published_month(MONTH, V2_ROWS, seed=12))

    done = kill_at(cfg, "between_commits", env=s3_server.env())

    assert done.returncode == -signal.SIGKILL, done.stderr[-2_000:]
    assert counts(cfg) == (versions["v1"][0], versions["v2"][1])
    state, reason = plan_states(cfg)[MONTH]
    assert (state, reason.split(" was ")[0]) == ("failed", "incomplete: companion table #1")
    check_recovery(cfg, versions, figure, case="s3", point="between_commits", killed=("v1", "v2", "failed"))
