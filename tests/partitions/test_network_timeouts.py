"""Every network call of the engine has bounded waits: a silent endpoint fails fast, as a named transient error.

The silent endpoint is a socket that accepts connections and never answers (``network_cases.black_hole``).
Asserting the elapsed time is the point here: the feature *is* the bound (under a minute by default).
"""

import time

import pytest
from network_cases import S3FaultProxy, black_hole

from partitions._storage import (
    DEFAULT_NETWORK_TIMEOUT,
    NETWORK_TIMEOUT_ENV,
    delta_storage_options,
    network_timeout,
    s3fs_kwargs,
)
from partitions.delta_log import read_records
from partitions.errors import InvalidSetting, SourceListingError, StorageUnavailable, Transient
from partitions.keys import MonthlyPartitions
from partitions.listing import filesystem_for, list_source
from partitions.storage_errors import is_storage_unavailable, open_table

EVENTS = MonthlyPartitions(r"events_(?P<key>\d{4}-\d{2})\.parquet", start="2019-02")
BOUND = 60.0


@pytest.fixture(autouse=True)
def aws_retry_defaults(monkeypatch):
    """The standard AWS retry variables, when a user sets them, decide instead: these tests pin the defaults."""
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)


def options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


def test_the_timeout_comes_from_the_argument_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv(NETWORK_TIMEOUT_ENV, raising=False)
    assert network_timeout() == DEFAULT_NETWORK_TIMEOUT == 10.0
    monkeypatch.setenv(NETWORK_TIMEOUT_ENV, "2.5")
    assert network_timeout() == 2.5
    assert network_timeout(4) == 4.0
    config = s3fs_kwargs({}, timeout=3)["config_kwargs"]
    assert config == {
        "connect_timeout": 3.0,
        "read_timeout": 3.0,
        "retries": {"mode": "standard", "total_max_attempts": 3},
    }
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    assert s3fs_kwargs({})["config_kwargs"]["retries"] == {"mode": "standard"}, "botocore reads the variable"
    assert delta_storage_options("s3://b/t", {"AWS_REGION": "x"}) == {
        "connect_timeout": "2500ms",
        "timeout": "2500ms",
        "retry_timeout": "7500ms",
        "AWS_REGION": "x",
    }
    assert delta_storage_options("s3://b/t", {"TIMEOUT": "90s"})["TIMEOUT"] == "90s"
    assert "timeout" not in delta_storage_options("s3://b/t", {"TIMEOUT": "90s"}), "the caller's value wins"
    assert delta_storage_options("/local/table", {}) == {}, "local tables have no network"


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan", "inf"])
def test_a_bad_timeout_setting_is_a_named_error(monkeypatch, value):
    monkeypatch.setenv(NETWORK_TIMEOUT_ENV, value)
    with pytest.raises(InvalidSetting, match=rf"^{NETWORK_TIMEOUT_ENV}='{value}' is not valid") as caught:
        network_timeout()
    assert (caught.value.exit_code, caught.value.name, caught.value.value) == (2, NETWORK_TIMEOUT_ENV, value)
    with pytest.raises(InvalidSetting, match=r"^timeout="):
        network_timeout(0)


def test_listing_s3_through_a_silent_endpoint_fails_with_a_named_transient_error_fast():
    with black_hole() as endpoint:
        started = time.monotonic()
        with pytest.raises(SourceListingError) as caught:
            list_source("s3://bucket/src", EVENTS, storage_options=options(endpoint), timeout=0.3)
        elapsed = time.monotonic() - started
    assert isinstance(caught.value, Transient)
    assert caught.value.detail == "ReadTimeoutError after 3 attempts of up to 0.3 s"
    assert "test-secret" not in str(caught.value)
    assert elapsed < BOUND


def test_reading_a_log_and_opening_a_table_through_a_silent_endpoint_fail_named(monkeypatch):
    monkeypatch.setenv(NETWORK_TIMEOUT_ENV, "0.3")  # the environment configures what takes no argument
    with black_hole() as endpoint:
        for call in (
            lambda: read_records("s3://bucket/table", storage_options=options(endpoint)),
            lambda: open_table("s3://bucket/table", storage_options=options(endpoint)),
        ):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable) as caught:
                call()
            assert time.monotonic() - started < BOUND
            assert caught.value.table_uri == "s3://bucket/table"


@pytest.mark.slow  # pyarrow makes 5 attempts of at least 1 s each (curl counts whole seconds): ~12 s
def test_reading_a_file_through_a_silent_endpoint_fails_as_a_store_outage():
    with black_hole() as endpoint:
        fs, path = filesystem_for("s3://bucket/src/events_2019-02.parquet", options(endpoint), timeout=0.5)
        started = time.monotonic()
        with pytest.raises(OSError, match="NETWORK_CONNECTION") as caught:
            fs.open_input_file(path)
        elapsed = time.monotonic() - started
    assert is_storage_unavailable(caught.value), "readers name it StorageUnavailable through storage_errors"
    assert elapsed < BOUND


@pytest.mark.slow
def test_the_default_bound_holds_for_a_silent_s3_endpoint(monkeypatch):
    """With nothing configured, a silent endpoint fails a listing in about 3 x 10 s, never minutes."""
    monkeypatch.delenv(NETWORK_TIMEOUT_ENV, raising=False)
    with black_hole() as endpoint:
        started = time.monotonic()
        with pytest.raises(SourceListingError, match="after 3 attempts of up to 10 s"):
            list_source("s3://bucket/src", EVENTS, storage_options=options(endpoint))
        elapsed = time.monotonic() - started
    assert elapsed < BOUND


@pytest.mark.integration
def test_an_s3_listing_answering_503_is_retried_with_backoff_then_succeeds_or_fails_bounded(s3_server, s3_bucket):
    s3_server.boto3_client().put_object(Bucket=s3_bucket, Key="src/events_2019-02.parquet", Body=b"feb")
    listing_request = rf"GET /{s3_bucket}\?list-type=2"
    with S3FaultProxy(s3_server.endpoint) as proxy:
        through_proxy = s3_server.storage_options() | {"AWS_ENDPOINT_URL": proxy.endpoint}
        proxy.fail(2, listing_request)
        listing = list_source(f"s3://{s3_bucket}/src", EVENTS, storage_options=through_proxy)
        assert list(listing.files) == ["2019-02"]
        assert proxy.matched[listing_request] == 3, "two 503s retried, the third answered"

        proxy.matched.clear()
        proxy.fail(10, listing_request)
        with pytest.raises(SourceListingError, match=r"SlowDown \(HTTP 503\) after 3 attempts") as caught:
            list_source(f"s3://{s3_bucket}/src", EVENTS, storage_options=through_proxy)
        assert isinstance(caught.value, Transient)
        assert proxy.matched[listing_request] == 3, "bounded: 3 attempts in all"
