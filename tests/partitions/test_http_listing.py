"""HTTP(S) sources degrade per month: retried HEADs, unavailable months, a dead host, Range support."""

import pickle
import time

import pyarrow.parquet as pq
import pytest
from network_cases import FileServer, black_hole
from partitions_cases import month_rows

from partitions.errors import (
    PartitionUnavailable,
    SourceListingError,
    SourceRangeUnsupported,
    StorageUnavailable,
    Transient,
)
from partitions.http_listing import list_http
from partitions.keys import MonthlyPartitions, month_range
from partitions.listing import filesystem_for, list_source, open_input
from partitions.staleness import PartitionState, plan

EVENTS = MonthlyPartitions(r"events_(?P<key>\d{4}-\d{2})\.parquet", start="2019-02", end="2019-07")
FAST = {"backoff": 0.01, "timeout": 2.0}


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    root.mkdir()
    for key in ["2019-02", "2019-03", "2019-04", "2019-05"]:
        pq.write_table(month_rows(key, 20), root / f"events_{key}.parquet")
    return root


def template(server: FileServer) -> str:
    return server.url("events_{key}.parquet")


def test_a_month_answering_503_is_retried_with_backoff_and_then_listed(site):
    with FileServer(site) as server:
        server.script["2019-03"] = [503, 503]
        listing = list_http(template(server), ["2019-02", "2019-03"], **FAST)
    assert sorted(listing.files) == ["2019-02", "2019-03"]
    assert listing.unavailable == {}
    heads = [path for method, path, _ in server.requests if method == "HEAD" and "2019-03" in path]
    assert len(heads) == 3, "two 503s, then the answer"


def test_a_month_still_unanswered_is_unavailable_and_the_other_months_proceed(site):
    with FileServer(site) as server:
        server.script["2019-05"] = [503] * 10
        listing = list_http(template(server), month_range("2019-02", "2019-06"), **FAST)
    assert sorted(listing.files) == ["2019-02", "2019-03", "2019-04"]
    assert [(s.uri.rsplit("/", 1)[-1], s.reason) for s in listing.skipped] == [
        ("events_2019-06.parquet", "not published (HTTP 404)")
    ]
    assert list(listing.unavailable) == ["2019-05"]
    reason = listing.unavailable["2019-05"]
    assert reason.startswith(f"HEAD {server.url('events_2019-05.parquet')}: HTTP 503")
    assert reason.endswith("(3 attempts of up to 2 s)")
    assert server.seen["2019-05"] == 3, "bounded: NETWORK_ATTEMPTS tries, no more"

    rows = plan(listing.files, {}, code_version="c", unavailable=listing.unavailable)
    states = {r.partition: r.state for r in rows}
    assert states == {k: PartitionState.MISSING for k in ["2019-02", "2019-03", "2019-04"]} | {
        "2019-05": PartitionState.UNAVAILABLE
    }
    unavailable = next(r for r in rows if r.state is PartitionState.UNAVAILABLE)
    assert unavailable.reason == (f"the source did not answer: {reason}; nothing was changed, the next run asks again")
    assert (unavailable.state.is_stale, unavailable.state.is_problem) == (False, True)

    with pytest.raises(PartitionUnavailable, match=r"^2019-05: the source did not answer \(HEAD ") as caught:
        listing.require("2019-05")
    assert isinstance(caught.value, Transient)
    assert caught.value.exit_code == 3
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.partition, copy.detail, str(copy)) == ("2019-05", reason, str(caught.value))


def test_a_silent_month_times_out_and_is_unavailable(site):
    with FileServer(site) as server:
        server.script["2019-04"] = ["hang"]
        listing = list_http(template(server), ["2019-02", "2019-04"], backoff=0.01, timeout=0.3, attempts=2)
    assert list(listing.files) == ["2019-02"]
    assert "timed out" in listing.unavailable["2019-04"]
    assert listing.unavailable["2019-04"].endswith("(2 attempts of up to 0.3 s)")
    assert server.seen["2019-04"] == 2


def test_a_client_error_is_not_retried_and_leaves_the_month_unavailable(site):
    with FileServer(site) as server:
        server.script["2019-03"] = [400, 400]
        listing = list_http(template(server), ["2019-02", "2019-03"], **FAST)
    assert listing.unavailable["2019-03"].endswith("answered HTTP 400 Bad Request")
    assert server.seen["2019-03"] == 1


def test_a_host_that_answers_nothing_fails_the_listing_after_the_first_batch_only(site):
    with FileServer(site) as server:
        server.script["events_"] = ["hang"]
        keys = month_range("2019-01", "2020-12")  # 24 months
        with pytest.raises(SourceListingError, match="no answer for any of the first 4 month") as caught:
            list_http(template(server), keys, backoff=0.01, timeout=0.2, attempts=2, max_workers=4)
    assert isinstance(caught.value, Transient)
    assert server.seen["events_"] == 4 * 2, "the first batch of 4 months, 2 attempts each; the other 20 untried"


def test_a_refused_connection_is_a_transient_listing_error():
    with pytest.raises(SourceListingError, match=r"ConnectionRefusedError") as caught:
        list_http("http://127.0.0.1:9/events_{key}.parquet", ["2019-02"], backoff=0.01, timeout=2)
    assert caught.value.uri == "http://127.0.0.1:9/events_{key}.parquet"


def test_a_black_hole_http_source_fails_named_within_the_bound():
    with black_hole() as endpoint:
        started = time.monotonic()
        with pytest.raises(SourceListingError, match="timed out"):
            list_http(f"{endpoint}/events_{{key}}.parquet", month_range("2019-02", "2025-12"), timeout=0.5)
        elapsed = time.monotonic() - started
    assert elapsed < 60, f"a silent host must fail fast, took {elapsed:.1f} s"


def test_only_the_named_keys_are_probed(site):
    with FileServer(site) as server:
        listing = list_source(template(server), EVENTS, keys=["2019-03"])
    assert list(listing.files) == ["2019-03"]
    assert {path for _, path, _ in server.requests} == {"/events_2019-03.parquet"}


def test_a_server_that_ignores_ranges_is_a_named_error_not_bad_bytes(site):
    with FileServer(site, ranges=False) as server:
        with pytest.raises(SourceRangeUnsupported, match="does not support HTTP Range requests") as caught:
            list_http(template(server), ["2019-02", "2019-03"], **FAST)
        url = server.url("events_2019-02.parquet")
        with pytest.raises(SourceRangeUnsupported):
            filesystem_for(url)
        with pytest.raises(SourceRangeUnsupported):
            open_input(url)
    error = caught.value
    assert error.uri == server.url("events_2019-02.parquet")
    assert error.evidence == "a GET for bytes=0-0 answered 200 instead of 206 Partial Content"
    assert "replace" not in str(error), "not the file's fault"
    assert (error.exit_code, isinstance(error, Transient)) == (3, False)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.uri, copy.evidence, str(copy)) == (error.uri, error.evidence, str(error))


def test_a_server_with_ranges_is_read_through_filesystem_for(site):
    with FileServer(site) as server:
        listing = list_http(template(server), ["2019-02"], **FAST)
        listed = list(server.requests)
        fs, path = filesystem_for(listing.files["2019-02"].uri)
        table = pq.read_table(path, filesystem=fs)
        with open_input(listing.files["2019-02"].uri) as handle:
            head = handle.read(4)
    assert table.num_rows == 20
    assert head == b"PAR1"
    assert listed == [("HEAD", "/events_2019-02.parquet", None)], "Accept-Ranges: bytes on the HEAD: no GET probe"
    assert ("GET", "/events_2019-02.parquet", "bytes=0-0") in server.requests, "opening a file checks ranges"


def test_opening_a_file_on_a_silent_server_is_a_named_transient_error_not_a_missing_file():
    with black_hole() as endpoint:
        for opener in (filesystem_for, open_input):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match=r"GET bytes=0-0: TimeoutError") as caught:
                opener(f"{endpoint}/events_2019-02.parquet", timeout=0.3)
            assert time.monotonic() - started < 60
            assert isinstance(caught.value, Transient)
            assert caught.value.table_uri == f"{endpoint}/events_2019-02.parquet"


def test_opening_retries_a_server_error_then_reads(site):
    with FileServer(site) as server:
        server.script["2019-02"] = [503]
        with open_input(server.url("events_2019-02.parquet"), timeout=2) as handle:
            assert handle.read(4) == b"PAR1"
    probes = [r for r in server.requests if r[2] == "bytes=0-0"]
    assert probes == [("GET", "/events_2019-02.parquet", "bytes=0-0")] * 2, "the probe got the 503, then 206"
    assert server.requests[:2] == probes
