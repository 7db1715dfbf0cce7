"""The configuration errors a user meets first, through the real CLI in a fresh process: one line, exit 2.

``run --cluster coiled`` without any Coiled token (the real ``coiled`` package installed; there is no network
here, which is how the failure used to surface: a DNS error 200 lines deep) and ``plan`` of a source directory
that does not exist (a wrong path, not a listing outage to retry).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from builders import write_months

from taxi_assets.errors import CoiledTokenMissing

# Runs the CLI's main() and reports, as the last line of stdout, what the process imported on the way.
PROBE = """
import sys
from taxi_assets.cli.main import main
code = main(sys.argv[1:])
print(f"probe: prefect={'prefect' in sys.modules} coiled={'coiled' in sys.modules}")
raise SystemExit(code)
"""


def isolated_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without any Dask, Coiled or taxi-assets setting, and a HOME with no Dask config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASK_", "COILED_", "TAXI_ASSETS_"))}
    for folder in ("home", "dask-config", "cache"):
        (tmp_path / folder).mkdir()
    env.update(
        HOME=str(tmp_path / "home"),
        DASK_CONFIG=str(tmp_path / "dask-config"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        **extra,
    )
    return env


def stderr_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


def test_run_on_coiled_without_a_token_exits_2_with_the_three_ways_and_never_calls_coiled(tmp_path: Path) -> None:
    source, sink = tmp_path / "source", tmp_path / "sink"
    write_months(str(source), ["2019-02"], rows=50)
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "run", "--source", str(source), "--sink", str(sink), "--cluster", "coiled"],
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = stderr_lines(done)
    expected = f"taxi-assets: {CoiledTokenMissing()}"
    assert [line for line in lines if line.startswith("taxi-assets:")] == [expected]
    for way in ("DASK_COILED__TOKEN", "coiled login", "TAXI_ASSETS_COILED_TOKEN_BLOCK"):
        assert way in expected
    assert "cloud.coiled.io" not in done.stderr + done.stdout  # no login attempt, no DNS error
    probe = done.stdout.splitlines()[-1]
    assert "coiled=False" in probe  # coiled.Cluster was never reached: no cluster, no browser login
    assert "prefect=False" in probe  # refused before the flow: no Prefect server, no traceback in its log
    assert lines == [expected]
    assert not (sink / "trips").exists()


def test_the_preflight_imports_neither_prefect_nor_coiled(tmp_path: Path) -> None:
    """What lets the CLI check before the flow starts: importing cluster.py and checking stays light."""
    probe = (
        "import sys, time\n"
        "t0 = time.perf_counter()\n"
        "from taxi_assets.orchestration.cluster import preflight_coiled\n"
        "from taxi_assets.errors import CoiledTokenMissing\n"
        "from taxi_assets.settings import Settings\n"
        "t1 = time.perf_counter()\n"
        "try:\n"
        "    preflight_coiled(Settings.resolve())\n"
        "except CoiledTokenMissing as exc:\n"
        "    seconds = f'{time.perf_counter() - t1:.3f}'\n"
        "    print(exc.exit_code, seconds, 'prefect' in sys.modules, 'coiled' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=isolated_env(tmp_path, TAXI_ASSETS_CLUSTER="coiled"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    code, seconds, prefect, coiled = done.stdout.split()
    assert (code, prefect, coiled) == ("2", "False", "False")
    assert float(seconds) < 1.0


def test_plan_of_a_missing_source_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    absent = tmp_path / "no" / "such" / "source"
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets", "plan", "--source", str(absent), "--sink", str(tmp_path / "sink")],
        env=isolated_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert stderr_lines(done) == [
        f"taxi-assets: --source / TAXI_ASSETS_SOURCE: source directory {absent} does not exist; "
        "fix the source path given to this run, then re-run"
    ]
    assert "network" not in done.stderr
