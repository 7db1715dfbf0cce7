"""The fixed cost of orchestration: ``taxi-assets run`` of one stale month (d) minus ``materialize`` of it (a).

Both commands do the same process work on the month (read, cast, rules, both Delta commits, the DuckDB checks);
(d) adds Prefect (its API server, the flow, the subflow and task runs, artifacts, concurrency limits),
the Dask cluster (scheduler and worker; a nanny and a worker process when several months are stale), the
run's verification read-back and the ``daily_summary`` task. The issue's target is (d) - (a) < 5 s on this
2-core machine, whatever the month size, so a small synthetic month (1 M rows by default) is enough.

Runs alternate (a), (d), (a), (d)... in fresh processes with fresh sinks, after one unmeasured warm-up of each
(bytecode cached, as on a deployed worker: this sandbox exports PYTHONDONTWRITEBYTECODE=1, so the children get a
PYTHONPYCACHEPREFIX instead). Every (d) runs with Prefect's INFO logs on stderr, and the phases come from their
timestamps (``HH:MM:SS.mmm``, the same wall clock as this script's), so nothing in the pipeline is instrumented.
Every child gets ``PREFECT_HOME=<work>/prefect-home``: a database shared with other jobs adds their lock waits.
To measure another checkout of the package, put it first on ``PYTHONPATH`` and run this script from outside it.

``--api`` chooses the Prefect API of (d): ``ephemeral`` (no ``PREFECT_API_URL``: Prefect starts a temporary server
in each run, the embedded default), ``server`` (one ``prefect server start`` for the whole benchmark and
``PREFECT_API_URL`` pointing at it, as with a deployment's worker or Prefect Cloud), or ``both`` (each (d) run is
then measured both ways, alternated with (a)).


  start -> flow        process start, imports, the CLI's plan, the Prefect API server's start, the flow run
  flow -> cluster      the plan task and the plan artifact
  cluster -> ready     the Dask cluster's start
  ready -> task done   the subflow, the month task on the worker (its work is in (a) too)
  task done -> closed  the subflow's end and the cluster's close
  closed -> flow done  verify-run, daily-summary, the summary artifacts, the flow run's end
  flow done -> exit    the API server's stop and the process exit

Usage: ``.venv/bin/python benchmarks/orchestration_cost.py [--rows 1000000] [--repeat 3] [--api both] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

MONTH = "2023-01"
BIN = Path(sys.executable).parent
# (label, pattern of the log line that ends the phase); the first match of each pattern after the previous one.
MARKS: list[tuple[str, str]] = [
    ("start -> flow", r"Beginning flow run"),
    ("flow -> cluster", r"starting a \w+ cluster"),
    ("cluster -> ready", r"cluster ready in"),
    ("ready -> task done", r"Task run 'materialize-\d{4}-\d{2}' - Finished"),
    ("task done -> closed", r"cluster closed"),
    ("closed -> flow done", r"Flow run '[^']+' - Finished in state \w+\(\)$"),
]
STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \|")


def child_env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        PYTHONPYCACHEPREFIX=str(work / "pycache"),
        PREFECT_LOGGING_LEVEL="INFO",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    # A Prefect home (SQLite database) of its own: a database shared with other jobs' servers makes requests
    # fail with "database is locked" (503) and retry after ~2 s, which would be measured as orchestration.
    env["PREFECT_HOME"] = str(work / "prefect-home")
    return env


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, float, str, str]:
    """(wall seconds, start and end as epoch seconds, stdout, stderr); raises on a non-zero exit."""
    t_epoch, t0 = time.time(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, t_epoch, t_epoch + seconds, done.stdout, done.stderr


def phases(stderr: str, start: float, end: float) -> dict[str, float]:
    """Seconds per phase from the log's timestamps (local wall clock, same day as ``start``)."""
    day = datetime.fromtimestamp(start).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    stamped = []
    for line in stderr.splitlines():
        m = STAMP.match(line)
        if m:
            h, mi, s, ms = (int(g) for g in m.groups())
            stamped.append((day + h * 3600 + mi * 60 + s + ms / 1000, line))
    out: dict[str, float] = {}
    last, i = start, 0
    for label, pattern in MARKS:
        rx = re.compile(pattern)
        for j in range(i, len(stamped)):
            if rx.search(stamped[j][1]):
                out[label] = stamped[j][0] - last
                last, i = stamped[j][0], j + 1
                break
        else:
            out[label] = float("nan")
    out["flow done -> exit"] = end - last
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(work: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """A `prefect server start` on a free port with the benchmark's PREFECT_HOME; (process, API URL)."""
    import urllib.request

    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).close()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"prefect server start did not answer at {url} within 180 s (log: {work / 'server.log'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", help="work directory (default: a new temporary one)")
    parser.add_argument("--api", choices=("ephemeral", "server", "both"), default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="orchestration-cost-"))
    source = work / "source"
    if not (source / f"fhvhv_tripdata_{MONTH}.parquet").exists():
        from taxi_assets.synth import write_month_file

        write_month_file(str(source), MONTH, args.rows, seed=1, layout="single")
    env = child_env(work)
    exe = str(BIN / "taxi-assets")

    def a() -> tuple[float, float, float, str, str]:
        sink = work / "sink-a"
        shutil.rmtree(sink, ignore_errors=True)
        return run([exe, "materialize", "--source", str(source), "--sink", str(sink), "--partition", MONTH,
                    "--json"], env)  # fmt: skip

    modes = ["ephemeral", "server"] if args.api == "both" else [args.api]
    server = None
    if "server" in modes:
        server = start_server(work, env)
    envs = {"ephemeral": env, "server": {**env, "PREFECT_API_URL": server[1]} if server else env}

    def d(mode: str) -> tuple[float, float, float, str, str]:
        sink = work / f"sink-d-{mode}"
        shutil.rmtree(sink, ignore_errors=True)
        return run([exe, "run", "--source", str(source), "--sink", str(sink), "--json"], envs[mode])

    try:
        a()  # warm-up: bytecode, the Prefect database's migrations
        for mode in modes:
            d(mode)
        runs: list[dict[str, object]] = []
        for k in range(args.repeat):
            for mode in modes:
                ta = a()[0]
                td, start, end, _, err = d(mode)
                runs.append({"repeat": k, "api": mode, "a": ta, "d": td, "d_minus_a": td - ta,
                             "phases": phases(err, start, end)})  # fmt: skip
                print(f"repeat {k} ({mode}): (a) {ta:.2f} s, (d) {td:.2f} s, (d)-(a) {td - ta:.2f} s",
                      file=sys.stderr, flush=True)  # fmt: skip
    finally:
        if server is not None:
            server[0].terminate()
            server[0].wait(timeout=30)

    def med(key: str, mode: str) -> float:
        return statistics.median(float(r[key]) for r in runs if r["api"] == mode)  # type: ignore[arg-type]

    labels = [label for label, _ in MARKS] + ["flow done -> exit"]
    phase_medians = {
        mode: {lb: statistics.median(r["phases"][lb] for r in runs if r["api"] == mode) for lb in labels}  # type: ignore[index]
        for mode in modes
    }
    medians = {mode: {k: med(k, mode) for k in ("a", "d", "d_minus_a")} for mode in modes}
    if args.json:
        print(json.dumps({"rows": args.rows, "runs": runs, "median": medians, "phases": phase_medians}, indent=2))
        return
    print(f"one stale month of {args.rows:,} rows, {args.repeat} alternated runs per API, medians\n")
    print("| | " + " | ".join(f"{m} API" for m in modes) + " |\n|---|" + "---|" * len(modes))
    print("| (a) taxi-assets materialize | " + " | ".join(f"{medians[m]['a']:.2f} s" for m in modes) + " |")
    print("| (d) taxi-assets run | " + " | ".join(f"{medians[m]['d']:.2f} s" for m in modes) + " |")
    print("| (d) - (a) | " + " | ".join(f"{medians[m]['d_minus_a']:.2f} s" for m in modes) + " |\n")
    print("| phase of (d) | " + " | ".join(modes) + " |\n|---|" + "---|" * len(modes))
    for lb in labels:
        print(f"| {lb} | " + " | ".join(f"{phase_medians[m][lb]:.2f}" for m in modes) + " |")


if __name__ == "__main__":
    main()
