"""A secret given through a Prefect block or the environment is used, and shows up nowhere it could leak: not in
the flow runs (parameters, state messages), task runs, logs, artifacts or events the Prefect API holds, and
not in the Delta logs on the bucket. Real parts: the S3-compatible server process, Prefect's test API, a real
LocalCluster, real Delta tables. A failing month is part of each run, so error messages are scanned too."""

from __future__ import annotations

import json

import pytest
from builders import month_rows
from distributed import LocalCluster
from prefect import get_client
from prefect.events.filters import EventFilter
from prefect.testing.utilities import prefect_test_harness
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters
from servers import S3Server

from taxi_assets.orchestration.flows import fhvhv_pipeline
from taxi_assets.settings import S3Credentials, Settings
from taxi_assets.synth import write_month_file

pytestmark = pytest.mark.integration

AWS_VARS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_SESSION_TOKEN")


@pytest.fixture(scope="module", autouse=True)
def prefect_api():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def dask_address(prefect_api):
    with get_client(sync_client=True) as client:
        api_url = str(client.api_url)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None, env={"PREFECT_API_URL": api_url}
    ) as existing:
        yield existing.scheduler_address


def api_filter(path: str, body: dict) -> list[dict]:
    """Raw API reads with only the fields we set (the 3.8 client's nulls are refused by fastapi >= 0.151)."""
    with get_client(sync_client=True) as client:
        return client.request("POST", path, json=body).json()  # type: ignore[arg-type]


def everything_prefect_holds() -> str:
    """Flow runs, task runs, logs, artifacts and events of this API, as one JSON text."""
    page = {"limit": 200, "offset": 0}
    found = {
        "flow_runs": api_filter("/flow_runs/filter", page),
        "task_runs": api_filter("/task_runs/filter", page),
        "logs": api_filter("/logs/filter", {**page, "sort": "TIMESTAMP_ASC"}),
        "artifacts": api_filter("/artifacts/filter", page),
    }
    events = []
    with get_client(sync_client=True) as client:
        result = client.read_events(filter=EventFilter(), limit=50)
        events += result.events
        while result.next_page:
            result = client.read_events_page(str(result.next_page))
            events += result.events
    found["events"] = [e.model_dump(mode="json") for e in events]
    assert found["flow_runs"]
    assert found["logs"]
    assert found["artifacts"]
    assert found["events"]
    return json.dumps(found)


def delta_logs(server: S3Server, bucket: str) -> dict[str, bytes]:
    s3 = server.boto3_client()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []) if "/_delta_log/" in o["Key"]]
    return {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def write_source(server: S3Server, bucket: str) -> Settings:
    """2019-02 as a real month and 2019-03 as bytes no reader accepts, on the bucket."""
    creds = S3Credentials(
        key_id=server.key_id, secret=server.secret, endpoint_url=server.endpoint, region=server.region
    )
    cfg = Settings.resolve(source=f"s3://{bucket}/source", sink=f"s3://{bucket}/warehouse", env={}, s3=creds)
    write_month_file(cfg.source, "2019-02", 150, seed=1, storage_options=cfg.storage_options(cfg.source))
    server.boto3_client().put_object(
        Bucket=bucket, Key="source/fhvhv_tripdata_2019-03.parquet", Body=b"<Error>AccessDenied</Error>" * 20
    )
    return cfg


def assert_used_and_not_leaked(server: S3Server, bucket: str, cfg: Settings, state) -> None:
    # Used: the good month landed on the bucket through the given credentials; the bad one failed alone.
    assert state.is_failed()
    assert "2019-03" in state.message
    assert month_rows(cfg, "trips", "2019-02") + month_rows(cfg, "quarantine", "2019-02") == 150
    secret = server.secret
    held = everything_prefect_holds()
    assert "2019-03" in held  # the scan reads the failure, so it would see a secret in it
    assert secret not in held
    logs = delta_logs(server, bucket)
    assert any(k.startswith("warehouse/trips/_delta_log/") for k in logs)
    assert any(k.startswith("warehouse/checks/_delta_log/") for k in logs)
    leaking = [k for k, body in logs.items() if secret.encode() in body]
    assert leaking == []


def test_a_secret_from_an_aws_credentials_block(
    s3_server: S3Server, s3_bucket: str, dask_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    AwsCredentials(
        aws_access_key_id=s3_server.key_id,
        aws_secret_access_key=s3_server.secret,
        region_name=s3_server.region,
        aws_client_parameters=AwsClientParameters(endpoint_url=s3_server.endpoint),
    ).save("taxi-assets-s3", overwrite=True)
    cfg = write_source(s3_server, s3_bucket)

    state = fhvhv_pipeline(
        source=cfg.source, sink=cfg.sink, cluster=dask_address, aws_block="taxi-assets-s3", return_state=True
    )

    assert_used_and_not_leaked(s3_server, s3_bucket, cfg, state)
    (run,) = [
        r
        for r in api_filter("/flow_runs/filter", {"limit": 200, "offset": 0})
        if r["id"] == str(state.state_details.flow_run_id)
    ]
    assert run["parameters"]["aws_block"] == "taxi-assets-s3"  # the name travels, never the secret


def test_a_secret_from_the_environment(s3_env: S3Server, s3_bucket: str, dask_address: str) -> None:
    cfg = write_source(s3_env, s3_bucket)
    state = fhvhv_pipeline(source=cfg.source, sink=cfg.sink, cluster=dask_address, return_state=True)
    assert_used_and_not_leaked(s3_env, s3_bucket, cfg, state)
