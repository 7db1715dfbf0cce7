"""A real `taxi-assets run` stopped while its month tasks read: Ctrl-C, SIGTERM and SIGKILL, then a normal run.

The run is a subprocess in its own session (as a terminal runs a command), on Prefect's ephemeral API with a
PREFECT_HOME of the test's own, so the killed run and the next one share the database that holds the months'
concurrency slots. Its two months come from a throttled HTTP source (slow_source.py, another process), so
each month task is still reading when the signal arrives: the server announces the first large body it sends.

Asserted: Ctrl-C (SIGINT to the process group, what a terminal sends) and SIGTERM (to the command alone, what
a supervisor sends) stop the run within 10 s with exit 130 / 143, one line and no traceback, and leave no
process of its tree running (the API server, Dask workers); nothing of a month is committed. After a SIGKILL of
the process group, which leaves both months' slots taken by dead workers, the next run does not wait for them:
it releases them (it says so) and completes, with every source row accounted for.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from builders import source_rows, write_months
from deltalake import DeltaTable

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MONTHS = ["2019-04", "2019-05"]
ROWS = 300_000  # ~12 MiB a month: 12 s of reading at the throttled rate
RATE = 1_000_000  # bytes per second
STOP_WITHIN = 10.0
TAXI_ASSETS = str(Path(sys.executable).with_name("taxi-assets"))


class SlowSource:
    def __init__(self, root: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("slow_source.py")), str(root), str(RATE)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.uri = f"http://127.0.0.1:{self.port}/fhvhv_tripdata_{{key}}.parquet"
        os.set_blocking(self.proc.stdout.fileno(), False)

    def forget_reads(self) -> None:
        """Drop the announcements of earlier runs: the server is the module's, and a run stopped after its first
        read leaves the reads it had started in the pipe. Counted by the next wait, they made it return before
        that run's month tasks had started (the SIGKILL test then killed a run holding one slot or none)."""
        assert self.proc.stdout is not None
        while self.proc.stdout.readline():
            pass

    def set_rate(self, rate: float) -> None:
        import urllib.request

        urllib.request.urlopen(f"http://127.0.0.1:{self.port}/__rate__/{rate}", timeout=10).read()

    def wait_reading(self, run: subprocess.Popen[str], months: int = 1, timeout: float = 300) -> set[str]:
        """Block until the server sends the data of ``months`` different months (their tasks run); their paths."""
        assert self.proc.stdout is not None
        deadline, paths = time.monotonic() + timeout, set()
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("reading"):
                paths.add(line.split()[1])
                if len(paths) >= months:
                    return paths
                continue
            if run.poll() is not None:
                pytest.fail(f"the run ended ({run.returncode}) before reading: {run.communicate()[1][-2000:]}")
            time.sleep(0.1)
        pytest.fail(f"{len(paths)} of {months} month(s) read")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowSource]:
    root = tmp_path_factory.mktemp("slow-source")
    write_months(str(root), MONTHS, rows=ROWS, seed=7)
    server = SlowSource(root)
    yield server
    server.close()


@pytest.fixture
def slow(source: SlowSource) -> SlowSource:
    source.set_rate(RATE)
    return source


def start_run(source: SlowSource, sink: Path, home: Path, **env: str) -> subprocess.Popen[str]:
    source.forget_reads()  # what the server announces from now on is this run's
    return subprocess.Popen(
        [TAXI_ASSETS, "run", "--partitions", ",".join(MONTHS), "--source", source.uri, "--sink", str(sink)],
        env={**os.environ, "PREFECT_HOME": str(home), "TAXI_ASSETS_LOCK_TIMEOUT": "600", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def tree(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    root = psutil.Process(proc.pid)
    return [root, *root.children(recursive=True)]


def command_line(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def tree_with(proc: subprocess.Popen[str], markers: tuple[str, ...], timeout: float = 30.0) -> list[psutil.Process]:
    """The process tree once each marker is in some process's command line (a loaded host may still be spawning
    or exec-ing one when the month's first bytes go out); fails naming the command lines seen."""
    deadline = time.monotonic() + timeout
    while True:
        procs = tree(proc)
        lines = [command_line(p) for p in procs]
        if all(any(m in line for line in lines) for m in markers):
            return procs
        if time.monotonic() > deadline:
            pytest.fail(f"no process with {markers} after {timeout:.0f} s: " + " | ".join(x[:120] for x in lines))
        time.sleep(0.2)


def still_running(procs: list[psutil.Process], wait: float = 5.0) -> list[str]:
    """Processes of ``procs`` still running after ``wait`` seconds (a SIGKILLed process takes a moment to go)."""
    _, waiting = psutil.wait_procs(procs, timeout=wait)
    alive = []
    for p in waiting:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.pid} {' '.join(p.cmdline()[:4])}")
        except psutil.NoSuchProcess:
            pass
    return alive


def committed_rows(sink: Path) -> int:
    total = 0
    for table in ("trips", "quarantine"):
        if (sink / table / "_delta_log").exists():
            total += DeltaTable(str(sink / table)).to_pyarrow_dataset().count_rows()
    return total


@pytest.mark.parametrize(
    ("sig", "to_group", "code"),
    [(signal.SIGINT, True, 130), (signal.SIGTERM, False, 143)],
    ids=["ctrl-c-to-the-group", "sigterm-to-the-command"],
)
def test_a_signal_stops_the_run_promptly_whole_and_with_nothing_left_running(
    slow: SlowSource, tmp_path: Path, sig: signal.Signals, to_group: bool, code: int, figure
) -> None:
    run = start_run(slow, tmp_path / "sink", tmp_path / "prefect")
    slow.wait_reading(run)
    # Prefect's ephemeral API server and the Dask worker processes are in the tree to be stopped
    procs = tree_with(run, ("uvicorn", "spawn_main"))
    t0 = time.monotonic()
    if to_group:
        os.killpg(run.pid, sig)
    else:
        os.kill(run.pid, sig)
    _, err = run.communicate(timeout=120)
    stopped = time.monotonic() - t0
    left = still_running(procs, wait=1.0)
    figure("stop", signal=sig.name, seconds=round(stopped, 2), exit=run.returncode, processes=len(procs), left=left)

    assert run.returncode == code, err[-3000:]
    assert stopped < STOP_WITHIN
    assert f"taxi-assets: stopped by {sig.name}: nothing partial was committed" in err
    assert "Traceback" not in err
    assert left == []
    assert committed_rows(tmp_path / "sink") == 0


def test_after_a_sigkill_the_next_run_releases_the_dead_holders_and_completes(
    slow: SlowSource, tmp_path: Path, figure
) -> None:
    sink, home = tmp_path / "sink", tmp_path / "prefect"
    run = start_run(slow, sink, home)
    slow.wait_reading(run, months=len(MONTHS))  # both month tasks hold their slot
    procs = tree(run)
    os.killpg(run.pid, signal.SIGKILL)  # nothing of the run runs on the way out: slots and records stay
    run.communicate(timeout=60)
    assert still_running(procs) == []

    slow.set_rate(0)
    t0 = time.monotonic()
    # A lock timeout the old guard would have spent in full waiting on the dead run's slots, then exit 6.
    again = start_run(slow, sink, home, TAXI_ASSETS_LOCK_TIMEOUT="300")
    _, err = again.communicate(timeout=900)
    seconds = time.monotonic() - t0
    figure("recover_after_kill", seconds=round(seconds, 1), exit=again.returncode)

    assert again.returncode == 0, err[-3000:]
    slot_lines = "\n".join(line for line in err.splitlines() if "fhvhv-month-" in line or "busy" in line)
    assert err.count("released the slot of a dead holder") == len(MONTHS), slot_lines or err[-3000:]
    assert seconds < 240
    assert committed_rows(sink) == len(MONTHS) * ROWS
    root = Path(slow.proc.args[2])  # type: ignore[index]
    assert sum(source_rows(str(root / f"fhvhv_tripdata_{m}.parquet")) for m in MONTHS) == len(MONTHS) * ROWS
