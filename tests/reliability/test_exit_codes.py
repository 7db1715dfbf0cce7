"""Exit codes 5, 6 and 8 through the CLI, and ``CheckFailed`` raised by ``run_month`` itself, for real.

A failed check is provoked, not constructed: tamper.py alters a committed data file of the month between its
write and its verification (one trip duplicated in place), and the DuckDB checks that ``run_month`` runs next
catch it. These cases use the production batch and row-group sizes (256 Ki-row batches, 768 Ki-row groups) on a
month of 600,000 rows: three batches, so the streamed digest and the committed files are built as in production.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_cases import local_settings, materialize, month_rows, plan_states, published_month, put_source
from tamper import tampering

from taxi_assets.assets import trips
from taxi_assets.cli.main import main
from taxi_assets.errors import CheckFailed
from taxi_assets.io import reader
from taxi_assets.settings import Settings

MONTH = "2019-04"
ROWS = 600_000
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def source_table():
    return published_month(MONTH, ROWS, seed=11, anomalies="realistic")


@pytest.fixture
def cfg(tmp_path: Path, source_table) -> Settings:
    cfg = local_settings(tmp_path)
    put_source(cfg, MONTH, source_table)
    return cfg


@pytest.fixture
def tampered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    wrapped, altered = tampering(trips.write_month)
    monkeypatch.setattr(trips, "write_month", wrapped)
    return altered


def test_the_production_sizes_are_in_force() -> None:
    import inspect

    assert inspect.signature(reader.MonthReader).parameters["batch_rows"].default == 256 * 1024
    assert ROWS > 2 * 256 * 1024


def test_run_month_raises_check_failed_when_a_committed_file_is_altered(
    cfg: Settings, tampered: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(CheckFailed) as info:
        materialize(cfg, MONTH)  # plan, then run_month: write, (tamper), verify
    assert len(tampered) == 1
    error = info.value
    assert (error.partition, error.check) == (MONTH, "no_duplicates_introduced")
    assert "the month is planned stale until a run passes its checks" in str(error)
    state, reason = plan_states(cfg)[MONTH]
    assert state == "failed"
    assert "no_duplicates_introduced" in reason

    monkeypatch.undo()  # the disk behaves again: the next run rebuilds the month and its checks pass
    result = materialize(cfg, MONTH)
    assert all(c["passed"] for c in result.checks)
    assert plan_states(cfg)[MONTH][0] == "fresh"
    assert month_rows(cfg, "trips", MONTH) + month_rows(cfg, "quarantine", MONTH) == ROWS


def test_a_failed_check_under_materialize_is_exit_5(
    cfg: Settings, tampered: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["materialize", "--partition", MONTH, "--source", cfg.source, "--sink", cfg.sink])
    assert code == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [err[0]]
    assert err[0].startswith(f"taxi-assets: {MONTH}: check 'no_duplicates_introduced' failed: observed ")


RUN_TAMPERED = (
    f"import sys; sys.path.insert(0, {str(HERE)!r}); import tamper; tamper.install(); "
    "from taxi_assets.cli.main import main; raise SystemExit(main(sys.argv[1:]))"
)


@pytest.mark.integration
@pytest.mark.slow
def test_a_month_failing_its_checks_under_run_is_exit_6(cfg: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "TAXI_ASSETS_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")  # Prefect's ephemeral API, as a bare `taxi-assets run`
    done = subprocess.run(
        [sys.executable, "-c", RUN_TAMPERED, "run", "--source", cfg.source, "--sink", cfg.sink],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )  # one month: Prefect runs it on an in-process Dask worker, where tamper.install() took effect
    assert done.returncode == 6, done.stderr[-3000:]
    assert f"1 month(s) failed ({MONTH}: CheckFailed: {MONTH}: check 'no_duplicates_introduced' failed" in (
        done.stdout.replace("\n", " ")
    )
    assert "Traceback" not in done.stderr


def run_cli(cfg: Settings, *options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``taxi-assets run`` on ``cfg`` with these options and Prefect settings, and none of this process's own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TAXI_ASSETS_", "PREFECT_API_"))}
    return subprocess.run(
        [sys.executable, "-m", "taxi_assets", "run", "--source", cfg.source, "--sink", cfg.sink, *options],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_unreachable_prefect_api_is_exit_8(cfg: Settings) -> None:
    done = run_cli(cfg, PREFECT_API_URL="http://127.0.0.1:9/api")  # nothing listens on the discard port
    assert done.returncode == 8, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        "taxi-assets: http://127.0.0.1:9/api: Failed to reach API at http://127.0.0.1:9/api/; nothing was written: "
        "run again, or point PREFECT_API_URL at a running Prefect server (`prefect server start`)"
    ]
    assert not Path(cfg.trips_uri).exists()


@pytest.mark.parametrize(
    ("home", "problem"),
    [("missing/parent/home", "{root}/missing/parent does not exist"), ("a-file/home", "{root}/a-file is a file")],
    ids=["under-a-missing-directory", "under-a-file"],
)
def test_a_prefect_home_that_cannot_hold_the_local_database_is_exit_2_at_once(
    cfg: Settings, tmp_path: Path, home: str, problem: str, figure
) -> None:
    # Before the preflight: Prefect started 28 API servers, each failing, for 3.4 minutes, then a message that
    # named neither the directory nor the cause (exit 8).
    root = tmp_path / "homes"
    root.mkdir()
    (root / "a-file").write_text("not a directory")
    t0 = time.monotonic()
    done = run_cli(cfg, PREFECT_HOME=str(root / home))
    seconds = time.monotonic() - t0
    figure("prefect_home_refused", case=home, seconds=round(seconds, 1), exit=done.returncode)
    assert done.returncode == 2, done.stderr[-3000:]
    ours = [line for line in done.stderr.splitlines() if line.startswith("taxi-assets:")]
    assert len(ours) == 1, done.stderr[-3000:]
    assert ours[0].startswith(f"taxi-assets: PREFECT_HOME: {root / home}: Prefect's local database ")
    assert problem.format(root=root) in ours[0]
    assert "Traceback" not in done.stderr
    assert "Starting temporary server" not in done.stderr  # no API server was tried
    assert seconds < 60
    assert not Path(cfg.trips_uri).exists()


def test_a_scheduler_address_where_nothing_listens_is_exit_8_at_once(cfg: Settings, tmp_path: Path, figure) -> None:
    # Before the probe: Dask waited 30 s per connection attempt; exit 1 after 55 s, with three tracebacks.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    t0 = time.monotonic()
    done = run_cli(cfg, "--cluster", address, PREFECT_HOME=str(tmp_path / "prefect"))
    seconds = time.monotonic() - t0
    figure("scheduler_refused", seconds=round(seconds, 1), exit=done.returncode)
    assert done.returncode == 8, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [
        f"taxi-assets: no Dask scheduler answers at {address} (Connection refused); nothing was written: start the "
        "scheduler and its workers (`dask scheduler`, `dask worker ADDRESS`), or run on --cluster local"
    ]
    assert seconds < 30
    assert not Path(cfg.trips_uri).exists()
