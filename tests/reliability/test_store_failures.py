"""A store that is gone or refuses the credentials gives one named error, on the read paths and on uploads.

Real parts only: the moto server in its own process, the fault proxy in front of it (``s3_proxy.Proxy``: ``deny``
answers ``403 InvalidAccessKeyId``, ``down`` closes connections unanswered), or a port nobody listens on.

* the log read that planning does (``partitions.delta_log``, s3fs/botocore) and the opening of a Delta table
  (delta-rs): ``StorageUnavailable`` (``Transient``: the flow's ``retry_if_transient`` retries it) when the store
  does not answer, ``StorageAccessDenied`` (not transient, CLI exit code 2) when it refuses the credentials;
  both name the table, never the secret, and the CLI prints them as one line;
* a data-file upload the store refuses during a month's write: the writer (``FileSeries``) raises the named
  error itself, the files it started are deleted and neither table gets a commit.

``test_transient_faults.py`` has the upload that keeps failing with 5xx (``StorageUnavailable`` from the writer);
``test_secret_leaks.py`` scans every text these failures produce for the secret.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import pytest
from reliability_cases import free_port, log, published_month, put_source, s3_settings, snapshot, wrong_key_settings

from partitions.delta_log import read_records
from partitions.errors import StorageAccessDenied, StorageUnavailable, Transient
from partitions.overwrite import commit_files
from partitions.records import MaterializationRecord
from partitions.source import Listing
from partitions.storage_errors import open_table
from taxi_assets.assets.trips import materialize_month, new_run_id, plan_months
from taxi_assets.cli.main import main as cli_main
from taxi_assets.io.sources import list_months
from taxi_assets.model.schema import PARTITION_COLUMN, trips_schema
from taxi_assets.settings import Settings

pytestmark = pytest.mark.integration

WRONG_SECRET = "wrong-secret-Vb3Qm8Lx1Z"
MONTH = "2023-03"
NOTHING_LISTED = Listing(files={})  # the source answered: what remains to fail is the sink's log read


@pytest.fixture(autouse=True)
def _proxy_up(proxy):
    proxy.reset()
    yield
    proxy.up()


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    """A bucket whose sink holds one materialized month, written with the right credentials."""
    name = s3_server.make_bucket("store")
    cfg = s3_settings(s3_server, name)
    put_source(cfg, MONTH, published_month(MONTH, 200, seed=7))
    write(cfg, MONTH)
    return name


@pytest.fixture
def fail_fast(monkeypatch):
    """botocore (s3fs) and delta-rs's object store try once: what matters here is what they raise at the end."""
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")


def write(cfg: Settings, month: str) -> None:
    plan = plan_months(cfg, partitions=[month])
    materialize_month(plan.listing.files[month], cfg, run_id=new_run_id(), code_version=plan.code_version)


def raised(op: Callable[[], object], kind: type[Exception]) -> tuple[Exception, str]:
    """The error ``op`` raised, asserted to be ``kind``, and every text it carries (message, chained traceback)."""
    with pytest.raises(kind) as caught:
        op()
    exc = caught.value
    return exc, str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def run_cli(monkeypatch, capsys, cfg: Settings, endpoint: str, command: str = "plan") -> tuple[int, str]:
    """``taxi-assets <command>`` in this process, with the credentials in the AWS_* variables a user exports."""
    for name, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "AKIAWRONGKEY",
        "AWS_SECRET_ACCESS_KEY": WRONG_SECRET,
        "AWS_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    code = cli_main([command, "--source", cfg.source, "--sink", cfg.sink])
    return code, capsys.readouterr().err


def test_planning_against_a_stopped_endpoint_is_storage_unavailable_naming_the_table(bucket, fail_fast):
    cfg = wrong_key_settings(bucket, f"http://127.0.0.1:{free_port()}", WRONG_SECRET)

    exc, said = raised(lambda: plan_months(cfg, listing=NOTHING_LISTED), StorageUnavailable)

    assert isinstance(exc, Transient), "the flow's retry_if_transient retries it"
    assert (exc.table_uri, exc.partition, exc.exit_code) == (cfg.trips_uri, "", 3)
    assert str(exc).startswith(f"the store of {cfg.trips_uri} did not answer (EndpointConnectionError)")
    assert "retry later" in str(exc)
    assert WRONG_SECRET not in said
    exc, _ = raised(
        lambda: open_table(cfg.trips_uri, storage_options=cfg.storage_options(cfg.trips_uri)), StorageUnavailable
    )
    assert exc.table_uri == cfg.trips_uri


def test_planning_through_a_cut_network_prints_one_line_and_exits_3(bucket, proxy, fail_fast, monkeypatch, capsys):
    cfg = wrong_key_settings(bucket, proxy.endpoint, WRONG_SECRET)
    proxy.fail("down", path=r"/warehouse/trips/", count=10_000)  # the source lists; the trips log is cut off

    code, err = run_cli(monkeypatch, capsys, cfg, proxy.endpoint)

    assert proxy.stats()["faults"].get("down", 0) >= 1
    assert code == 3
    assert err.startswith(f"taxi-assets: the store of {cfg.trips_uri} did not answer (")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert WRONG_SECRET not in err


def test_wrong_credentials_are_refused_with_a_named_error_naming_the_uri_not_the_secret(bucket, proxy):
    cfg = wrong_key_settings(bucket, proxy.endpoint, WRONG_SECRET)
    trips, options = cfg.trips_uri, cfg.storage_options(cfg.trips_uri)
    proxy.deny()
    operations: dict[str, tuple[Callable[[], object], str]] = {
        "log read": (lambda: read_records(trips, storage_options=options), trips),
        "planning": (lambda: plan_months(cfg, listing=NOTHING_LISTED), trips),
        "listing the source": (lambda: list_months(cfg), cfg.source),
        "opening the Delta table": (lambda: open_table(trips, storage_options=options), trips),
        "committing": (
            lambda: commit_files(
                trips,
                [],
                column=PARTITION_COLUMN,
                record=MaterializationRecord(MONTH, "success", "run-denied", "cv"),
                schema=trips_schema(),
                storage_options=options,
            ),
            trips,
        ),
    }
    for name, (op, uri) in operations.items():
        exc, said = raised(op, StorageAccessDenied)
        assert not isinstance(exc, Transient), name
        assert exc.exit_code == 2
        assert f"access to {uri} was refused (" in str(exc), (name, str(exc))
        assert "check the credentials" in str(exc)
        assert WRONG_SECRET not in said, name


def test_the_cli_names_a_refused_log_read_in_one_line_and_exits_2(bucket, proxy, monkeypatch, capsys):
    cfg = wrong_key_settings(bucket, proxy.endpoint, WRONG_SECRET)
    proxy.fail("deny", path=r"/warehouse/trips/", count=10_000)  # the listing passes: the log read is refused

    code, err = run_cli(monkeypatch, capsys, cfg, proxy.endpoint, "status")

    assert code == 2
    assert err.startswith(f"taxi-assets: access to {cfg.trips_uri} was refused (")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert WRONG_SECRET not in err


@pytest.mark.usefixtures("small_batches")
def test_a_refused_upload_fails_the_month_from_the_writer_and_commits_nothing(s3_server, proxy):
    cfg = s3_settings(s3_server, s3_server.make_bucket("upload"), endpoint=proxy.endpoint)
    put_source(cfg, MONTH, published_month(MONTH, 200, seed=7))
    write(cfg, MONTH)
    put_source(cfg, MONTH, published_month(MONTH, 300, seed=12))
    before, logs = snapshot(cfg, MONTH), {name: len(log(cfg, name)) for name in ("trips", "quarantine")}
    proxy.fail("deny", method="PUT|POST", path=r"/warehouse/trips/month%3D", count=10_000)

    exc, said = raised(lambda: write(cfg, MONTH), StorageAccessDenied)

    assert proxy.stats()["faults"].get("deny", 0) >= 1
    assert (exc.uri, exc.partition) == (cfg.trips_uri, MONTH)
    frames = traceback.extract_tb(exc.__traceback__)
    assert any(f.filename.endswith("parquet_files.py") for f in frames), "named where the upload happens"
    assert isinstance(exc.__cause__, OSError)
    assert "AWS Error" in str(exc.__cause__)
    proxy.up()
    assert snapshot(cfg, MONTH) == before, "readers see v1 whole; the files started were deleted"
    assert {name: len(log(cfg, name)) for name in ("trips", "quarantine")} == logs, "no commit at all"
    assert cfg.storage_options(cfg.trips_uri)["AWS_SECRET_ACCESS_KEY"] not in said


def test_a_source_month_the_store_refuses_to_read_stops_the_month_without_a_retry(s3_server, proxy):
    """The listing passed, then the object itself is refused: not a transient fault, and not the file's fault."""
    cfg = s3_settings(s3_server, s3_server.make_bucket("refused-read"), endpoint=proxy.endpoint)
    put_source(cfg, MONTH, published_month(MONTH, 200, seed=7))
    plan = plan_months(cfg, partitions=[MONTH])
    proxy.fail("deny", method="GET|HEAD", path=rf"/source/.*{MONTH}\.parquet", count=10_000)

    exc, said = raised(
        lambda: materialize_month(plan.listing.files[MONTH], cfg, run_id=new_run_id(), code_version="cv"),
        StorageAccessDenied,
    )

    assert proxy.stats()["faults"].get("deny", 0) >= 1
    assert not isinstance(exc, Transient), "a retry with the same keys gets the same 403"
    assert exc.partition == MONTH
    assert exc.uri == plan.listing.files[MONTH].uri
    assert "check the credentials" in str(exc)
    assert cfg.storage_options(cfg.trips_uri)["AWS_SECRET_ACCESS_KEY"] not in said
    proxy.up()
    assert log(cfg, "trips") == [], "nothing recorded against a good file"
