"""prefect.yaml through the real Prefect machinery, as its users run it: `prefect server start` (SQLite under a
temporary PREFECT_HOME), `prefect work-pool create`, `prefect --no-prompt deploy --all`, and
`prefect worker start` processes running the flow into real Delta tables.

Schedules are tested by the runs the server's scheduler creates, not by the deployment's definition: the weekly
deployment's Scheduled runs must fall on Mondays 06:00 New York time, and a run the scheduler created (from a
copy of the weekly deployment with a 10-second interval) must be executed by a worker to the end. The pull step
for a worker on another host (deployments/remote-worker.prefect.yaml: git_clone of the repository named by a
Prefect variable) is run for real against a bare clone of a snapshot of this checkout.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
import yaml
from deltalake import DeltaTable
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect_server import REPO, PrefectServer, prefect_server

from taxi_assets.orchestration.flows import fhvhv_pipeline
from taxi_assets.synth import write_month_file

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.integration]

POOL = "taxi-assets"
FLOW = fhvhv_pipeline.name  # "fhvhv-pipeline"
NEW_YORK = ZoneInfo("America/New_York")
REMOTE_YAML = "deployments/remote-worker.prefect.yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as srv:
        with temporary_settings({PREFECT_API_URL: srv.api_url}):
            yield srv


@pytest.fixture(scope="module")
def deployed(server: PrefectServer) -> PrefectServer:
    """The pool and both deployments of prefect.yaml, exactly as README tells users to create them."""
    server.cli("work-pool", "create", POOL, "--type", "process")
    server.cli("--no-prompt", "deploy", "--all")
    return server


def runs_of(deployment_id: UUID, *states: StateType) -> list[FlowRun]:
    """The deployment's flow runs in these state types, earliest expected start first."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states)))),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
        )


def wait_for_scheduled_runs(srv: PrefectServer, deployment_id: UUID, *, timeout: float = 90) -> list[FlowRun]:
    """Poll until the server's scheduler has created Scheduled runs for the deployment."""
    deadline = time.monotonic() + timeout
    while not (runs := runs_of(deployment_id, StateType.SCHEDULED)) and time.monotonic() < deadline:
        time.sleep(1)
    assert runs, f"the scheduler created no run in {timeout} s; server log:\n" + srv.log.read_text()[-4000:]
    return runs


def delta_months(table: Path) -> set[str]:
    return set(DeltaTable(str(table)).to_pyarrow_table(columns=["month"]).column("month").to_pylist())


def test_deployments_as_the_server_reports_them(deployed: PrefectServer) -> None:
    with get_client(sync_client=True) as client:
        weekly = client.read_deployment_by_name(f"{FLOW}/fhvhv-weekly")
        backfill = client.read_deployment_by_name(f"{FLOW}/fhvhv-backfill")

    assert weekly.entrypoint == backfill.entrypoint == "taxi_assets/orchestration/flows.py:fhvhv_pipeline"
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


def test_the_parameter_schema_offers_the_intents_as_a_choice(deployed: PrefectServer) -> None:
    """What the UI's custom-run form is built from: intent is a drop-down, descriptions are plain text."""
    with get_client(sync_client=True) as client:
        schema = client.read_deployment_by_name(f"{FLOW}/fhvhv-backfill").parameter_openapi_schema
    props = schema["properties"]
    assert {"intent", "partitions", "source", "sink", "cluster", "aws_block", "source_anonymous"} <= set(props)
    assert props["intent"].get("enum") == ["", "reprocess", "test_subset"], props["intent"]
    assert props["intent"]["default"] == ""
    with_markup = {name: p["description"] for name, p in props.items() if "``" in p.get("description", "")}
    assert not with_markup, f"reST markup in parameter descriptions: {with_markup}"


def test_the_scheduler_creates_the_weekly_runs_on_mondays_at_six_new_york(deployed: PrefectServer) -> None:
    with get_client(sync_client=True) as client:
        weekly = client.read_deployment_by_name(f"{FLOW}/fhvhv-weekly")
        backfill = client.read_deployment_by_name(f"{FLOW}/fhvhv-backfill")

    runs = wait_for_scheduled_runs(deployed, weekly.id)

    starts = [r.expected_start_time.astimezone(NEW_YORK) for r in runs if r.expected_start_time]
    assert len(starts) == len(runs) >= 1
    assert all(r.auto_scheduled for r in runs), "created by the scheduler, not by a user"
    assert all((s.weekday(), s.hour, s.minute, s.second) == (0, 6, 0, 0) for s in starts), starts
    now = datetime.now(UTC)
    assert now < starts[0] <= now + timedelta(days=7), "the first is the coming Monday"
    assert all((b.date() - a.date()).days == 7 for a, b in itertools.pairwise(starts)), starts
    assert not runs_of(backfill.id, StateType.SCHEDULED), "the backfill deployment has no schedule"
    # Prefect 3.8.8 with SQLAlchemy 2.1 failed here: "InvalidRequestError: Can't evaluate bulk DML statement".
    assert not deployed.log_errors(), "\n".join(deployed.log_errors())


def test_a_backfill_run_executed_by_a_worker_lands_exactly_its_month(deployed: PrefectServer, tmp_path: Path) -> None:
    source, sink = tmp_path / "source", tmp_path / "warehouse"
    for month in ("2019-02", "2019-03"):
        write_month_file(str(source), month, 200, seed=1)
    run = run_deployment(
        f"{FLOW}/fhvhv-backfill",
        parameters={"partitions": ["2019-02"], "source": str(source), "sink": str(sink), "cluster": "local"},
        timeout=0,  # only create it: the worker below executes it
    )
    # Not the checkout: the deployment's pull step must find it.
    worker = deployed.worker_once(POOL, cwd=tmp_path)

    with get_client(sync_client=True) as client:
        final = client.read_flow_run(run.id)
    assert final.state is not None
    assert final.state.is_completed(), f"{final.state!r}\n{worker.stdout[-6000:]}"
    assert delta_months(sink / "trips") == {"2019-02"}


def every_ten_seconds_yaml(dest: Path, *, pool: str, source: Path, sink: Path) -> Path:
    """prefect.yaml with only the weekly deployment, renamed, every 10 s, in its own pool, source and sink given
    as the work pool job variables' environment (how a deployment hands settings to its runs)."""
    config: dict[str, Any] = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (weekly,) = [d for d in config["deployments"] if d["name"] == "fhvhv-weekly"]
    env = {
        **weekly["work_pool"]["job_variables"]["env"],
        "TAXI_ASSETS_SOURCE": str(source),
        "TAXI_ASSETS_SINK": str(sink),
    }
    config["deployments"] = [
        {
            **weekly,
            "name": "fhvhv-every-10s",
            "work_pool": {**weekly["work_pool"], "name": pool, "job_variables": {"env": env}},
            "schedules": [{"interval": 10, "active": True}],
        }
    ]
    config.pop("definitions", None)
    dest.write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


def test_a_run_the_scheduler_created_is_executed_by_a_worker(deployed: PrefectServer, tmp_path: Path) -> None:
    source, sink = tmp_path / "source", tmp_path / "warehouse"
    write_month_file(str(source), "2019-02", 200, seed=1)
    pool = "taxi-assets-every-10s"  # its own pool: the other tests' workers never see these runs
    prefect_file = every_ten_seconds_yaml(tmp_path / "prefect.yaml", pool=pool, source=source, sink=sink)
    deployed.cli("work-pool", "create", pool, "--type", "process")
    deployed.cli("--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file))
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(f"{FLOW}/fhvhv-every-10s")

    wait_for_scheduled_runs(deployed, deployment.id)
    try:
        worker = deployed.worker_once(pool, cwd=tmp_path)  # the earliest due run, nothing else
    finally:
        deployed.cli("deployment", "delete", f"{FLOW}/fhvhv-every-10s")  # stops the schedule, drops its runs

    with get_client(sync_client=True) as client:
        done = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))
            ),
        )
    ran = [r for r in done if r.deployment_id == deployment.id]
    assert len(ran) == 1, f"{[(r.name, r.state_name) for r in done]}\n{worker.stdout[-6000:]}"
    assert ran[0].auto_scheduled, "a run the scheduler created, not a triggered one"
    assert delta_months(sink / "trips") == {"2019-02"}


def test_the_remote_worker_file_deploys_the_same_deployments() -> None:
    """The two files differ only in how a run gets the code (build and pull steps), so either can be deployed."""
    local = yaml.safe_load((REPO / "prefect.yaml").read_text())
    remote = yaml.safe_load((REPO / REMOTE_YAML).read_text())
    assert remote["deployments"] == local["deployments"]
    assert remote["name"] == local["name"]
    assert remote["prefect-version"] == local["prefect-version"]
    assert "build" not in remote
    assert [next(iter(step)) for step in remote["pull"]] == [
        "prefect.deployments.steps.git_clone",
        "prefect.deployments.steps.set_working_directory",
    ]


def snapshot_repository(dest: Path) -> str:
    """A git repository holding one commit of this checkout's files as they are now (tracked and new, not
    ignored); returns the commit id. The bare clone of it stands in for the hosted repository."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():  # a tracked file deleted in the checkout is not in the snapshot
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot of the checkout"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=dest, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_a_worker_on_another_host_runs_a_clone_of_the_repository(tmp_path: Path) -> None:
    """deployments/remote-worker.prefect.yaml as is, on a server of its own (it deploys the same names): the
    repository is a Prefect variable, the worker runs in a directory that is not the checkout, and the flow
    run clones the repository and imports taxi_assets from the clone."""
    (snapshot := tmp_path / "snapshot").mkdir()
    commit = snapshot_repository(snapshot)
    bare = tmp_path / "taxi-assets.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(snapshot), str(bare)], check=True, capture_output=True)
    source, sink, runs = tmp_path / "source", tmp_path / "warehouse", tmp_path / "worker-host" / "runs"
    runs.mkdir(parents=True)
    write_month_file(str(source), "2019-03", 200, seed=2)

    with prefect_server(tmp_path / "home") as srv, temporary_settings({PREFECT_API_URL: srv.api_url}):
        srv.cli("work-pool", "create", POOL, "--type", "process")
        srv.cli("variable", "set", "taxi_assets_repo", bare.as_uri())
        srv.cli("--no-prompt", "deploy", "--all", "--prefect-file", REMOTE_YAML)
        with get_client(sync_client=True) as client:
            backfill = client.read_deployment_by_name(f"{FLOW}/fhvhv-backfill")
        # Stored with its templates: each run resolves the variable and the clone's directory when it starts.
        assert backfill.pull_steps == [
            {
                "prefect.deployments.steps.git_clone": {
                    "id": "clone",
                    "repository": "{{ prefect.variables.taxi_assets_repo }}",
                    "branch": "main",
                }
            },
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ clone.directory }}"}},
        ]
        run = run_deployment(
            f"{FLOW}/fhvhv-backfill",
            parameters={"partitions": ["2019-03"], "source": str(source), "sink": str(sink)},
            job_variables={"working_dir": str(runs)},  # kept after the run, so the clone can be inspected
            timeout=0,
        )
        # Bytecode on, so the imports leave their trace in the clone.
        worker = srv.worker_once(POOL, cwd=runs.parent, env={"PYTHONDONTWRITEBYTECODE": None})
        with get_client(sync_client=True) as client:
            final = client.read_flow_run(run.id)

    assert final.state is not None
    assert final.state.is_completed(), f"{final.state!r}\n{worker.stdout[-6000:]}"
    assert "Executing deployment step: git_clone" in worker.stdout
    (clone,) = [p for p in runs.iterdir() if (p / ".git").exists()]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, check=True, capture_output=True, text=True)
    assert head.stdout.strip() == commit
    assert list((clone / "taxi_assets" / "__pycache__").glob("settings.*.pyc")), "taxi_assets came from the clone"
    assert delta_months(sink / "trips") == {"2019-03"}
