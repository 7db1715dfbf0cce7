"""No credential value in error messages, tracebacks, warnings, CLI output, or anything stored on the bucket.

``tests/taxi_assets/test_secrets.py`` covers the flow (Prefect runs, logs, artifacts, events, Delta logs).
This adds what the steps and the CLI meet when S3 refuses the credentials (the proxy answers every request
``403 InvalidAccessKeyId``) or cannot be reached (a port nobody listens on): listing, log reads, Delta opens,
the month reader, a whole materialization, DuckDB; and, after a real run with a failing month, every object
under the sink (``_delta_log`` JSON, ``_partitions_state``, data files, the checks table).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict

import pytest
from deltalake import DeltaTable
from reliability_cases import (
    MONTH,
    OTHER,
    all_bytes,
    free_port,
    materialize,
    published_month,
    put_source,
    s3_settings,
    status,
    wrong_key_settings,
)

from partitions import _storage
from partitions.delta_log import read_records
from partitions.maintenance import checkpoint
from partitions.overwrite import record_failure
from partitions.records import MaterializationRecord
from partitions.source import SourceFile
from partitions.storage_errors import open_table
from taxi_assets.assets.trips import materialize_month, plan_months
from taxi_assets.checks.verify import count_month
from taxi_assets.errors import UnreadableSource
from taxi_assets.io.reader import MonthReader
from taxi_assets.io.sources import list_months
from taxi_assets.model.schema import PARTITION_COLUMN, trips_schema
from taxi_assets.settings import Settings

pytestmark = pytest.mark.integration

WRONG_SECRET = "wrong-secret-Kq7PzX4vB2"


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    """A bucket with one materialized month, written with the right credentials."""
    name = s3_server.make_bucket("secrets")
    cfg = s3_settings(s3_server, name)
    put_source(cfg, MONTH, published_month(MONTH, 200, seed=7))
    materialize(cfg, MONTH)
    return name


def operations(cfg: Settings) -> dict[str, Callable[[], object]]:
    source = SourceFile(MONTH, f"{cfg.source}/fhvhv_tripdata_{MONTH}.parquet", 1, "fp")
    trips = cfg.trips_uri
    options = cfg.storage_options(trips)

    def read_month() -> None:
        with MonthReader(source, storage_options=cfg.storage_options(source.uri)) as reader:
            for _ in reader.batches():
                pass

    failure = MaterializationRecord(MONTH, "failed", "run-x", "cv", error="boom")
    return {
        "list the source": lambda: list_months(cfg),
        "plan": lambda: plan_months(cfg),
        "read the log": lambda: read_records(trips, storage_options=options),
        "open the Delta table": lambda: open_table(trips, storage_options=options),
        "read a month": read_month,
        "materialize a month": lambda: materialize_month(source, cfg, run_id="run-x"),
        "record a failure": lambda: record_failure(
            trips, failure, schema=trips_schema(), column=PARTITION_COLUMN, storage_options=options
        ),
        "count with DuckDB": lambda: count_month(trips, MONTH, version=1, storage_options=options),
    }


def everything_said(op: Callable[[], object]) -> tuple[str, str]:
    """(outcome, every text the call produced: exception str/repr, the whole chained traceback, warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            op()
            outcome, said = "no error", ""
        except Exception as exc:
            outcome = type(exc).__name__
            said = str(exc) + repr(exc) + "".join(traceback.format_exception(exc))
    return outcome, said + "".join(str(w.message) for w in caught)


def scan(cfg: Settings, secret: str, figure, case: str) -> dict[str, str]:
    leaks, outcomes = [], {}
    for name, op in operations(cfg).items():
        outcome, said = everything_said(op)
        outcomes[name] = outcome
        assert said or outcome == "no error"
        if secret in said:
            leaks.append(name)
    assert leaks == []
    assert "no error" not in {v for k, v in outcomes.items() if k != "record a failure"}, outcomes
    figure("secrets", case=case, places=len(outcomes), outcomes=outcomes, leaks=len(leaks))
    return outcomes


NAMED_READS = ("read the log", "open the Delta table", "plan")  # partitions.storage_errors names these


def test_errors_with_refused_credentials_name_no_secret(bucket, proxy, figure):
    proxy.deny()
    try:
        outcomes = scan(
            wrong_key_settings(bucket, proxy.endpoint, WRONG_SECRET), WRONG_SECRET, figure, "credentials refused (403)"
        )
    finally:
        proxy.up()
    assert {outcomes[name] for name in (*NAMED_READS, "list the source")} == {"StorageAccessDenied"}, outcomes


@pytest.mark.slow
def test_errors_with_an_unreachable_endpoint_name_no_secret(bucket, figure, monkeypatch):
    monkeypatch.setattr(_storage, "S3_MAX_ATTEMPTS", 1)  # fail fast; the messages are what matter here
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore (s3fs), likewise
    cfg = wrong_key_settings(bucket, f"http://127.0.0.1:{free_port()}", WRONG_SECRET)
    outcomes = scan(cfg, WRONG_SECRET, figure, "endpoint unreachable")
    assert outcomes["read the log"] == outcomes["open the Delta table"] == "StorageUnavailable", outcomes


def test_cli_output_names_no_secret(bucket, proxy, figure):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAXI_ASSETS_"))}
    env.update(
        AWS_ENDPOINT_URL=proxy.endpoint,
        AWS_ACCESS_KEY_ID="AKIAWRONGKEY",
        AWS_SECRET_ACCESS_KEY=WRONG_SECRET,
        AWS_REGION="us-east-1",
        TAXI_ASSETS_SOURCE=f"s3://{bucket}/source",
        TAXI_ASSETS_SINK=f"s3://{bucket}/warehouse",
    )
    proxy.deny()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "taxi_assets", "--debug", "materialize", "--partition", MONTH],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        proxy.up()
    assert done.returncode != 0
    assert "Traceback" in done.stderr  # --debug: the whole chain is printed
    assert WRONG_SECRET not in done.stdout + done.stderr
    figure("secrets", case="CLI --debug with refused credentials", places=1, leaks=0)


def test_nothing_stored_or_reported_after_a_run_names_the_secret(s3_env, s3_bucket, figure):
    s3_server = s3_env  # the AWS_* variables are set, as a user would: the CLI's status reads them
    cfg = s3_settings(s3_server, s3_bucket)
    secret = s3_server.secret
    put_source(cfg, MONTH, published_month(MONTH, 200, seed=7))
    put_source(cfg, OTHER, published_month(OTHER, 150, seed=8))
    said = [json.dumps(asdict(materialize(cfg, MONTH)), default=str)]
    s3_server.boto3_client().put_object(
        Bucket=s3_bucket, Key=f"source/fhvhv_tripdata_{OTHER}.parquet", Body=b"<Error>AccessDenied</Error>"
    )
    with pytest.raises(UnreadableSource) as info:
        materialize(cfg, OTHER)
    said.append("".join(traceback.format_exception(info.value)))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        said.append(json.dumps(status(cfg)))
    said.append(repr(cfg))
    said.append(json.dumps(DeltaTable(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri)).history()))

    for uri in (cfg.trips_uri, cfg.quarantine_uri):  # a Delta checkpoint and a state checkpoint, scanned too
        checkpoint(uri, storage_options=cfg.storage_options(uri))
    stored = all_bytes(cfg)
    kinds = {"_delta_log", "_partitions_state", "checks", "quarantine", ".parquet"}
    assert all(any(kind in path for path in stored) for kind in kinds), sorted(stored)
    leaking = [path for path, body in stored.items() if secret.encode() in body]
    assert leaking == []
    assert not [text for text in said if secret in text]
    assert "rejected" in said[2]  # the refused file is recorded rejected (left alone until it changes)
    figure("secrets", case="objects under the sink after a run with a failing month", places=len(stored), leaks=0)
