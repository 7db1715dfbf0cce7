"""Two `taxi-assets run` commands at once over one S3 source and sink: both succeed and leave every month fresh.

What an operator does by accident (a cron job and a manual run): two real CLI processes, each on Prefect's
ephemeral API over one PREFECT_HOME (so the months' concurrency slots are shared), started together over the
same stale months on the S3 server. Asserted: both exit 0; a `plan` taken the moment the first exits says every
month is fresh; between them the runs built each month exactly once (their own summaries say which months each
wrote; the other's months are "built meanwhile"); each month's trips + quarantine rows are the source's. Run in
a loop under `stress --cpu 4` for issue 17.5 (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_cases import month_rows, published_month, put_source, s3_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MONTHS = ["2019-02", "2019-03", "2019-04"]
ROWS = 20_000
TAXI_ASSETS = str(Path(sys.executable).with_name("taxi-assets"))


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([TAXI_ASSETS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_runs_at_once_both_succeed_and_leave_every_month_fresh(s3_server, s3_bucket, tmp_path, figure) -> None:
    cfg = s3_settings(s3_server, s3_bucket)
    for i, month in enumerate(MONTHS):
        put_source(cfg, month, published_month(month, ROWS, seed=60 + i, anomalies="realistic"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAXI_ASSETS_", "PREFECT_API"))}
    env.update(
        s3_server.env(),
        TAXI_ASSETS_SOURCE=cfg.source,
        TAXI_ASSETS_SINK=cfg.sink,
        PREFECT_HOME=str(tmp_path / "prefect"),
        TAXI_ASSETS_LOCK_TIMEOUT="600",
    )
    t0 = time.monotonic()
    runs = [start(["run", "--json"], env) for _ in range(2)]
    while all(run.poll() is None for run in runs):  # the moment the first one exits 0 ...
        time.sleep(0.05)
    first = next(run for run in runs if run.poll() is not None)
    plan_at_first_exit = subprocess.run([TAXI_ASSETS, "plan", "--json"], env=env, capture_output=True, text=True)
    outs = [run.communicate(timeout=1200) for run in runs]
    seconds = round(time.monotonic() - t0, 1)
    for run, (_, err) in zip(runs, outs, strict=True):
        assert run.returncode == 0, f"exit {run.returncode}: {err[-4000:]}"
    # What a `plan` says the moment the first exits 0 (the checker's observation in issue 17.5): every month fresh.
    # A month the other run still held was finished (checks recorded) before the first could skip it.
    early = {row["partition"]: (row["state"], row["reason"]) for row in json.loads(plan_at_first_exit.stdout)}
    assert {m: s for m, (s, _) in early.items()} == dict.fromkeys(MONTHS, "fresh"), early
    assert first.returncode == 0
    summaries = [json.loads(out[out.index("{") :]) for out, _ in outs]
    written = [sorted(s["written"]) for s in summaries]
    plan = subprocess.run([TAXI_ASSETS, "plan", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    states = {row["partition"]: (row["state"], row["reason"]) for row in json.loads(plan.stdout)}
    assert {m: s for m, (s, _) in states.items()} == dict.fromkeys(MONTHS, "fresh"), states
    figure("concurrency", case="2 CLI runs at once over S3", seconds=seconds, written=written, at_first_exit=early)
    for month in MONTHS:
        assert month_rows(cfg, "trips", month) + month_rows(cfg, "quarantine", month) == ROWS, month
    assert sorted(m for w in written for m in w) == MONTHS  # between them, each month was built exactly once
