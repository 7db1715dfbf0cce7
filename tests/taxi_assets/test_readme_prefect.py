"""README's "Operating it with Prefect" lines, run exactly as written, in bash, from the checkout.

The block marked `# prefect-walkthrough` is extracted from README.md and run as one script with `bash -e` (a
failing line fails the test). Only the environment is the test's: a temporary PREFECT_HOME, a free port in
PREFECT_SERVER_API_PORT, TMPDIR (where the lines put the server's and the worker's logs), and the source and sink
directories, which the lines keep when already set. The server and the worker the lines start in the background
are stopped afterwards with their whole process group, and the test fails if any process of them is left.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from deltalake import DeltaTable
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_server import REPO, processes_with_env, stop_group, user_env
from servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]

MARKER = "# prefect-walkthrough"
FLOW = "fhvhv-pipeline"


def readme_block(marker: str = MARKER) -> str:
    """The fenced bash block of README.md whose first line is ``marker``."""
    blocks = re.findall(r"^```bash\n(.*?)^```", (REPO / "README.md").read_text(), flags=re.DOTALL | re.MULTILINE)
    (block,) = [b for b in blocks if b.startswith(marker + "\n")]
    return block


def test_the_block_is_the_operating_section() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Operating it with Prefect") :]
    section = section[: section.index("\n## ", 1)]
    assert readme_block() in section
    assert f"prefect deployment run {FLOW}/fhvhv-backfill" in readme_block()


def test_the_readme_walkthrough_ends_with_a_finished_backfill_and_the_next_weekly_runs(tmp_path: Path) -> None:
    script = tmp_path / "walkthrough.sh"
    script.write_text(readme_block())
    home, port = tmp_path / "prefect-home", free_port()
    source, sink = tmp_path / "source", tmp_path / "warehouse"
    env = user_env(
        home,
        PREFECT_SERVER_API_PORT=str(port),
        TMPDIR=str(tmp_path),
        TAXI_ASSETS_SOURCE=str(source),
        TAXI_ASSETS_SINK=str(sink),
    )
    env.pop("VIRTUAL_ENV", None)  # the lines activate the environment themselves
    output = tmp_path / "walkthrough.out"
    with output.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-ex", str(script)],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the server and the worker join this group: stopped with it below
        )
    try:
        try:
            code = proc.wait(timeout=420)
        except subprocess.TimeoutExpired:
            code = None
        said = output.read_text()
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(tmp_path.glob("prefect-*.log")))
        assert code == 0, f"exit {code}\n{said[-6000:]}\n{logs}"
        assert "Flow run finished successfully in 'Completed'" in said

        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
            with get_client(sync_client=True) as client:
                backfill = client.read_deployment_by_name(f"{FLOW}/fhvhv-backfill")
                weekly = client.read_deployment_by_name(f"{FLOW}/fhvhv-weekly")
                (run,) = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[backfill.id]))
                )
                weekly_runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[weekly.id]))
                )
        assert run.state_type is StateType.COMPLETED
        assert run.parameters["partitions"] == ["2019-02"]
        scheduled = [r for r in weekly_runs if r.state_type is StateType.SCHEDULED and r.auto_scheduled]
        assert scheduled, "the scheduler created no run for fhvhv-weekly"
        listed = said[said.rindex("prefect flow-run ls") :]
        assert any(str(r.id) in listed for r in scheduled), listed
        trips = DeltaTable(str(sink / "trips")).to_pyarrow_table(columns=["month"])
        assert set(trips.column("month").to_pylist()) == {"2019-02"}
        server_log = (tmp_path / "prefect-server.log").read_text()
        assert not re.search(r"\bERROR\b|Traceback", server_log), server_log[-6000:]
    finally:
        killed = stop_group(proc.pid, home=home)
        proc.wait(timeout=10)
    assert not killed, f"processes that outlived two SIGTERMs (SIGKILLed): {killed}"
    assert not processes_with_env("PREFECT_HOME", str(home)), "a server or worker process was left behind"
