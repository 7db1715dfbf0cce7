"""A real `prefect server start` for the deployment tests, and the process hygiene around it.

A module, not a conftest fixture, so that `test_deployments.py` can start a second server for one test and
`test_readme_prefect.py` can reuse the environment and the leftover-process check.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from servers import free_port, wait_until_listening

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")
_LOG_ERROR = re.compile(r"\bERROR\b|Traceback \(most recent call last\)")


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """A shell's environment as a user would have it: no Prefect, AWS or taxi-assets settings of ours leak in.

    PREFECT_HOME is a fresh directory: profiles, the server's SQLite database and the worker's state live there.
    """
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "TAXI_ASSETS_"))}
    keep.pop("PYTHONPATH", None)  # flow runs must import taxi_assets the way a user's would, not through pytest's
    return {
        **keep,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "COLUMNS": "200",  # Prefect's tables print whole ids
        **extra,
    }


def processes_with_env(name: str, value: str) -> list[int]:
    """Ids of this user's live processes whose environment has ``name=value`` (read from /proc)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours
            continue
    return found


def _wait_gone(home: Path, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := processes_with_env("PREFECT_HOME", str(home))) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def stop_group(pgid: int, *, home: Path, grace: float = 10.0) -> list[int]:
    """Stop a process group the way a user stops Prefect processes: SIGTERM, and SIGTERM again for what is left.

    The second signal is needed: an idle `prefect worker start` (Prefect 3.9.1) answers the first SIGTERM with
    "Sending SIGINT to the process worker" and goes on running; its handler turns a second one into SIGKILL.
    Whatever still runs with this PREFECT_HOME after that is SIGKILLed; returns those pids (normally none).
    """
    for _ in range(2):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            break
        if not _wait_gone(home, grace):
            return []
    left = processes_with_env("PREFECT_HOME", str(home))
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _wait_gone(home, grace)
    return left


class PrefectServer:
    """A `prefect server start` process (SQLite in a temporary PREFECT_HOME, a free port) and the environment
    that every CLI call, worker and client of a test shares."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "server.log"
        self.env = user_env(home, PREFECT_API_URL=self.api_url)

    def run(self, *args: str, cwd: Path = REPO, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """One `prefect` command, by default from the repository root."""
        return subprocess.run(
            [PREFECT, *args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def cli(self, *args: str, cwd: Path = REPO, timeout: float = 180) -> str:
        """One `prefect` command that must succeed; its output in the assertion message when it fails."""
        done = self.run(*args, cwd=cwd, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def worker_once(
        self, pool: str, *, cwd: Path, env: Mapping[str, str | None] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """`prefect worker start --run-once --limit 1`: takes the earliest due run of the pool, runs it to the end.

        In its own process group, killed whole if it outlives ``timeout`` (a flow run process included).
        """
        worker_env = dict(self.env)
        for name, value in (env or {}).items():
            if value is None:
                worker_env.pop(name, None)
            else:
                worker_env[name] = value
        proc = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool, "--run-once", "--limit", "1"],
            cwd=cwd,
            env=worker_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise AssertionError(f"worker still running after {timeout} s:\n{out[-6000:]}") from None
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")

    def log_errors(self) -> list[str]:
        """ERROR lines and tracebacks the server has logged so far (its services: scheduler, recorders...)."""
        return [line for line in self.log.read_text(errors="replace").splitlines() if _LOG_ERROR.search(line)]


@contextmanager
def prefect_server(home: Path) -> Iterator[PrefectServer]:
    """A running server; stopped on the way out with every process it started (its own process group)."""
    srv = PrefectServer(home)
    with srv.log.open("w") as log:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(srv.port), "--no-ui"],
            cwd=home,
            env=srv.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until_listening(f"{srv.api_url}/health", timeout=120)
            yield srv
        finally:
            stop_group(proc.pid, home=home)
            proc.wait(timeout=10)
