"""prefect.yaml through the real Prefect machinery: `prefect server start` (SQLite under a temporary
PREFECT_HOME), `prefect work-pool create`, `prefect --no-prompt deploy --all` from this checkout, a backfill run
triggered on the server and executed by `prefect worker start --run-once` in its own process, which runs the
flow from this checkout on a real LocalCluster into a real Delta table."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from servers import free_port, wait_until_listening

from taxi_assets.synth import write_month_file

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
POOL = "taxi-assets"
FLOW = "check_for_files"


class PrefectServer:
    """A `prefect server start` process and the environment every CLI call and the worker share."""

    def __init__(self, home: Path) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = home / "server.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "AWS_", "TAXI_ASSETS_"))},
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """One `prefect` command from the repository root."""
        return subprocess.run(
            [PREFECT, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def cli(self, *args: str, timeout: float = 180) -> str:
        """One `prefect` command that must succeed; its output in the assertion message when it fails."""
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, f"prefect {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def deploy_all(self) -> None:
        """`prefect --no-prompt deploy --all` from prefect.yaml, exactly as README tells users.

        fastapi is pinned to 0.150.0: from 0.151 on it rejects the ``"limit": null`` that the prefect 3.8.8
        client posts after creating a deployment, and ``--all`` stopped after the first one.
        """
        self.cli("--no-prompt", "deploy", "--all")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("prefect-home")
    srv = PrefectServer(home)
    with srv.log.open("w") as log:
        proc = subprocess.Popen(
            [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(srv.port), "--no-ui", "--analytics-off"],
            cwd=home,
            env=srv.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_listening(f"{srv.api_url}/health", timeout=120)
            with temporary_settings({PREFECT_API_URL: srv.api_url}):
                yield srv
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def deployed(server: PrefectServer) -> PrefectServer:
    server.cli("work-pool", "create", POOL, "--type", "process")
    server.deploy_all()
    return server


def test_deployments_as_the_server_reports_them(deployed: PrefectServer) -> None:
    with get_client(sync_client=True) as client:
        weekly = client.read_deployment_by_name(f"{FLOW}/fhvhv-weekly")
        backfill = client.read_deployment_by_name(f"{FLOW}/fhvhv-backfill")

    assert weekly.entrypoint == backfill.entrypoint == "taxi_assets/flows.py:fhvhv_pipeline"
    assert weekly.work_pool_name == backfill.work_pool_name == POOL
    assert weekly.parameters == {"intent": ""}
    assert backfill.parameters == {"intent": "", "partitions": []}
    (schedule,) = weekly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "0 6 * * 1",
        "America/New_York",
        True,
    )
    assert backfill.schedules == []
    # The pull step was resolved at deploy time to this checkout: runs import taxi_assets from here.
    assert weekly.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
    # The flow's signature is the parameter schema the UI shows for a custom run.
    props = weekly.parameter_openapi_schema["properties"]
    assert {"intent", "partitions", "source", "sink", "cluster", "aws_block", "source_anonymous"} <= set(props)


def test_a_backfill_run_executed_by_a_worker_lands_exactly_its_month(deployed: PrefectServer, tmp_path: Path) -> None:
    source, sink = tmp_path / "source", tmp_path / "warehouse"
    for month in ("2019-02", "2019-03"):
        write_month_file(str(source), month, 200, seed=1)
    started = time.perf_counter()
    run = run_deployment(
        f"{FLOW}/fhvhv-backfill",
        parameters={"partitions": ["2019-02"], "source": str(source), "sink": str(sink), "cluster": "local"},
        timeout=0,  # only schedule it: the worker below executes it
    )
    worker = subprocess.run(
        [PREFECT, "worker", "start", "--pool", POOL, "--type", "process", "--run-once"],
        cwd=tmp_path,  # not the checkout: the deployment's pull step must find it
        env=deployed.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    with get_client(sync_client=True) as client:
        final = client.read_flow_run(run.id)
    assert final.state is not None
    assert final.state.is_completed(), f"{final.state!r}\n{worker.stdout[-4000:]}\n{worker.stderr[-4000:]}"

    trips = DeltaTable(str(sink / "trips")).to_pyarrow_table(columns=["month"])
    assert set(trips.column("month").to_pylist()) == {"2019-02"}
    print(f"deployment run: {time.perf_counter() - started:.1f} s from trigger to a finished worker")
