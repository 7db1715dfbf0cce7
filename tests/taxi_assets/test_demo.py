"""`taxi-assets demo`, the README's first command, run the way a newcomer runs it: a fresh directory, Prefect's
ephemeral API, a local Dask cluster, and then a second time, when it must rebuild nothing.

One process per invocation (as from a shell), smaller months than the default so the test stays near a minute.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from partitions.delta_log import read_records
from partitions.storage_errors import open_table

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.slow]

MONTHS = ("2019-02", "2019-03", "2025-01")
REPUBLISHED = "2019-03"  # the demo re-publishes the middle month with new bytes


def demo(cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("taxi-assets")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}  # the ephemeral API, as a user
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", COLUMNS="200", PREFECT_LOGGING_LEVEL="WARNING")
    months = f"{MONTHS[0]}..{MONTHS[1]},{MONTHS[2]}"
    return subprocess.run(
        [str(exe), "demo", "--rows", "4000", "--months", months, "--report", ""],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )


def test_the_demo_tells_the_whole_story_then_a_second_run_rebuilds_nothing(tmp_path: Path) -> None:
    first = demo(tmp_path)

    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = first.stdout
    assert f"Rebuilt {', '.join(MONTHS)} on a local cluster" in out
    assert f"Rebuilt {REPUBLISHED} on a local cluster" in out, "only the re-published month is rebuilt"
    trips = tmp_path / "data" / "warehouse" / "trips"
    records = read_records(str(trips))
    assert sorted(records) == list(MONTHS)
    assert all(records[m].latest_failure is None and records[m].latest_success for m in MONTHS)
    runs = {m: records[m].latest_success.run_id for m in MONTHS}  # type: ignore[union-attr]
    assert runs[MONTHS[0]] == runs[MONTHS[2]], "the first run wrote every month"
    assert runs[REPUBLISHED] != runs[MONTHS[0]], "the second run rewrote the re-published month only"
    version = open_table(str(trips)).version()

    second = demo(tmp_path)

    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "Nothing stale: no month rebuilt, no cluster started." in second.stdout
    assert "Rebuilt" not in second.stdout
    assert open_table(str(trips)).version() == version, "no commit at all"
    status = [line for line in second.stdout.splitlines() if any(m in line for m in MONTHS)]
    assert {m for m in MONTHS for line in status if m in line and "fresh" in line} == set(MONTHS)
