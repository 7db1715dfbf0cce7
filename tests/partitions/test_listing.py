import hashlib
import http.server
import json
import os
import pickle
import shutil
import threading
import time
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from partitions_cases import month_rows

from partitions.errors import (
    DuplicatePartitionSource,
    SourceListingError,
    SourceNotFound,
    SourceRangeUnsupported,
    Transient,
)
from partitions.keys import MonthlyPartitions
from partitions.listing import filesystem_for, list_http, list_source, open_input
from partitions.source import Listing
from partitions.staleness import PartitionState, plan

EVENTS = MonthlyPartitions(r"events_(?P<key>\d{4}-\d{2})\.parquet", start="2019-02")


def put(root: Path, name: str, body: bytes = b"x") -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


@pytest.fixture
def cache(tmp_path):
    return tmp_path / "cache" / "fingerprints.json"


def test_local_listing_classifies_every_file(tmp_path, cache):
    src = tmp_path / "src"
    put(src, "events_2019-02.parquet", b"feb")
    put(src, "nested/events_2019-03.parquet", b"march")
    put(src, "events_2019-13.parquet")
    put(src, "events_2019-01.parquet")
    put(src, "README.md")
    listing = list_source(str(src), EVENTS, fingerprint_cache=cache)
    assert sorted(listing.files) == ["2019-02", "2019-03"]
    feb = listing.files["2019-02"]
    assert (feb.uri, feb.size) == (str(src / "events_2019-02.parquet"), 3)
    assert feb.fingerprint.startswith("sha256:")
    assert feb.last_modified is not None
    reasons = {Path(s.uri).name: s.reason for s in listing.skipped}
    assert reasons == {
        "README.md": "name does not match the pattern 'events_(?P<key>\\\\d{4}-\\\\d{2})\\\\.parquet'",
        "events_2019-13.parquet": "name matches the pattern but '2019-13' is not a real month",
        "events_2019-01.parquet": "month 2019-01 is before the first month 2019-02 of this asset",
    }
    assert listing.duplicates == {}
    assert not any(cache.parent.parent.joinpath("src").glob("*.json")), "no cache inside the source"


def test_two_files_for_one_month_fail_that_month_only(tmp_path, cache):
    src = tmp_path / "src"
    put(src, "a/events_2019-02.parquet")
    put(src, "b/EVENTS_2019-02.PARQUET")
    put(src, "events_2019-03.parquet")
    listing = list_source(str(src), EVENTS, fingerprint_cache=cache)
    assert list(listing.files) == ["2019-03"]
    assert listing.duplicates == {
        "2019-02": (str(src / "a/events_2019-02.parquet"), str(src / "b/EVENTS_2019-02.PARQUET"))
    }
    with pytest.raises(DuplicatePartitionSource, match="remove or rename all but one") as caught:
        listing.require("2019-02")
    assert caught.value.partition == "2019-02"
    assert listing.require("2019-03") is listing.files["2019-03"]
    rows = plan(listing.files, {}, code_version="c", source_problems=listing.problems())
    assert [(r.partition, r.state) for r in rows] == [("2019-02", PartitionState.FAILED), ("2019-03", "missing")]
    assert rows[0].reason.startswith("source cannot be used: 2 source files map to this partition")


def fingerprints(src: Path, cache: Path) -> dict[str, str]:
    return {k: f.fingerprint for k, f in list_source(str(src), EVENTS, fingerprint_cache=cache).files.items()}


def cached(cache: Path) -> dict[str, dict]:
    return {Path(path).name: entry for path, entry in json.loads(cache.read_text())["entries"].items()}


def sha(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def test_local_fingerprints_are_content_hashes_and_a_kept_mtime_on_new_bytes_is_noticed(tmp_path, cache):
    """``cp -p``, ``tar`` and ``os.utime`` keep the old size and mtime on new bytes; the ctime tells."""
    src = tmp_path / "src"
    in_place = put(src, "events_2019-02.parquet", b"aaaa")
    copied_over = put(src, "events_2019-03.parquet", b"cccc")
    untouched = put(src, "events_2019-04.parquet", b"dddd")
    time.sleep(1.1)  # older than the racy window (1 s): the first hashes are trusted as long as nothing changes
    first = fingerprints(src, cache)
    assert first == {"2019-02": sha(b"aaaa"), "2019-03": sha(b"cccc"), "2019-04": sha(b"dddd")}
    hashed = cached(cache)
    assert fingerprints(src, cache) == first
    assert cached(cache) == hashed, "unchanged files are not hashed again"

    old = in_place.stat()
    in_place.write_bytes(b"bbbb")  # rewritten in place, then its times put back
    os.utime(in_place, ns=(old.st_atime_ns, old.st_mtime_ns))
    replacement = put(tmp_path, "staging/events_2019-03.parquet", b"eeee")
    os.utime(replacement, ns=(copied_over.stat().st_atime_ns, copied_over.stat().st_mtime_ns))
    mtime = copied_over.stat().st_mtime_ns
    shutil.copy2(replacement, copied_over)  # cp -p: same size, same mtime, new bytes
    assert (in_place.stat().st_size, in_place.stat().st_mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert (copied_over.stat().st_size, copied_over.stat().st_mtime_ns) == (4, mtime)

    second = fingerprints(src, cache)
    assert second == {"2019-02": sha(b"bbbb"), "2019-03": sha(b"eeee"), "2019-04": sha(b"dddd")}
    assert cached(cache)["events_2019-04.parquet"] == hashed["events_2019-04.parquet"]
    assert untouched.read_bytes() == b"dddd"


def test_a_file_hashed_right_after_its_last_change_is_hashed_again_next_time(tmp_path, cache):
    """A change in the same timestamp tick as the hashing keeps every stat field: such an entry is not trusted."""
    src = tmp_path / "src"
    put(src, "events_2019-02.parquet", b"aaaa")
    fingerprints(src, cache)
    first = cached(cache)["events_2019-02.parquet"]
    assert fingerprints(src, cache) == {"2019-02": sha(b"aaaa")}
    again = cached(cache)["events_2019-02.parquet"]
    assert again["hashed_ns"] > first["hashed_ns"], "hashed again: its ctime was within 1 s of the first hashing"


def test_an_unwritable_cache_warns_and_the_listing_goes_on(tmp_path):
    src = tmp_path / "src"
    put(src, "events_2019-02.parquet")
    blocker = put(tmp_path, "not-a-dir")  # a file where the cache directory should be
    with pytest.warns(UserWarning, match="fingerprint cache"):
        listing = list_source(str(src), EVENTS, fingerprint_cache=blocker / "fingerprints.json")
    assert list(listing.files) == ["2019-02"]


def test_default_cache_lives_under_the_user_cache_dir(tmp_path, monkeypatch):
    src = tmp_path / "src"
    put(src, "events_2019-02.parquet")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    list_source(str(src), EVENTS)
    assert (tmp_path / "xdg" / "partitions" / "fingerprints.json").is_file()


def test_a_missing_directory_is_a_wrong_path_not_a_transient_listing_error(tmp_path):
    absent = tmp_path / "absent"
    with pytest.raises(SourceNotFound, match=r"source directory .*absent does not exist; fix the source path") as e:
        list_source(str(absent), EVENTS, fingerprint_cache=tmp_path / "c.json")
    assert (e.value.uri, e.value.exit_code) == (str(absent), 2)
    assert not isinstance(e.value, Transient | SourceListingError)  # a retry cannot fix a path
    assert "network" not in str(e.value)
    copy = pickle.loads(pickle.dumps(e.value))  # workers send errors back pickled
    assert (type(copy), copy.args, str(copy)) == (SourceNotFound, e.value.args, str(e.value))
    with pytest.raises(SourceNotFound, match="does not exist"):
        list_source(f"file://{absent}", EVENTS, fingerprint_cache=tmp_path / "c.json")
    a_file = put(tmp_path, "events_2019-02.parquet")
    with pytest.raises(SourceNotFound, match="is a file, not a directory"):
        list_source(str(a_file), EVENTS, fingerprint_cache=tmp_path / "c.json")


@pytest.mark.integration
def test_s3_listing_uses_etag_and_size_in_one_listing(s3_server, s3_bucket):
    client = s3_server.boto3_client()
    for key, body in [
        ("src/events_2019-02.parquet", b"feb"),
        ("src/2019/events_2019-03.parquet", b"march"),
        ("src/notes.txt", b"n"),
        ("other/events_2019-04.parquet", b"not under the prefix"),
    ]:
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    options = s3_server.storage_options()
    listing = list_source(f"s3://{s3_bucket}/src", EVENTS, storage_options=options)
    assert sorted(listing.files) == ["2019-02", "2019-03"]
    feb = listing.files["2019-02"]
    etag = client.head_object(Bucket=s3_bucket, Key="src/events_2019-02.parquet")["ETag"]
    assert (feb.uri, feb.size, feb.fingerprint) == (
        f"s3://{s3_bucket}/src/events_2019-02.parquet",
        3,
        f"etag:{etag}/size:3",
    )
    assert feb.last_modified is not None
    assert [Path(s.uri).name for s in listing.skipped] == ["notes.txt"]
    client.put_object(Bucket=s3_bucket, Key="src/events_2019-02.parquet", Body=b"feb, fixed")
    again = list_source(f"s3://{s3_bucket}/src", EVENTS, storage_options=options)
    assert again.files["2019-02"].fingerprint != feb.fingerprint
    with open_input(feb.uri, storage_options=options) as handle:
        assert handle.read() == b"feb, fixed"


@pytest.mark.integration
def test_s3_listing_errors_name_the_uri_but_never_the_secret(s3_server):
    with pytest.raises(SourceListingError, match="bucket does not exist") as caught:
        list_source("s3://no-such-bucket/src", EVENTS, storage_options=s3_server.storage_options())
    assert "s3://no-such-bucket/src" in str(caught.value)
    assert s3_server.secret not in str(caught.value)
    assert s3_server.secret not in repr(caught.value.args)


@pytest.mark.integration
def test_filesystem_for_reads_parquet_from_s3(s3_server, s3_bucket, tmp_path):
    pq.write_table(month_rows("2019-02", 7), tmp_path / "f.parquet")
    s3_server.boto3_client().upload_file(str(tmp_path / "f.parquet"), s3_bucket, "src/events_2019-02.parquet")
    fs, path = filesystem_for(f"s3://{s3_bucket}/src/events_2019-02.parquet", s3_server.storage_options())
    assert pq.read_table(path, filesystem=fs).num_rows == 7
    fs, path = filesystem_for(str(tmp_path / "f.parquet"))
    assert pq.read_table(path, filesystem=fs).num_rows == 7


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_HEAD(self):
        if "2019-05" in self.path:
            self.send_error(503, "busy")
        elif "2019-06" in self.path:
            self.send_error(403, "forbidden")
        else:
            super().do_HEAD()

    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "site"
    put(root, "events_2019-02.parquet", b"feb")
    put(root, "events_2019-03.parquet", b"march")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events_{{key}}.parquet"
    server.shutdown()


def test_http_template_heads_each_month(http_root):
    listing = list_http(http_root, ["2019-02", "2019-03", "2019-04", "2019-06"], check_ranges=False)
    assert sorted(listing.files) == ["2019-02", "2019-03"]
    feb = listing.files["2019-02"]
    assert feb.size == 3
    assert feb.fingerprint.startswith("last-modified:")
    assert feb.fingerprint.endswith("/size:3")
    assert feb.last_modified is not None
    assert [(Path(s.uri).name, s.reason) for s in listing.skipped] == [
        ("events_2019-04.parquet", "not published (HTTP 404)"),
        ("events_2019-06.parquet", "not published (HTTP 403)"),
    ]
    bounded = MonthlyPartitions(r"events_(?P<key>\d{4}-\d{2})\.parquet", start="2019-03", end="2019-04")
    with pytest.raises(SourceRangeUnsupported):  # python's http.server ignores Range: no reader could use it
        list_source(http_root, bounded)


def test_http_server_errors_leave_that_month_unavailable_and_a_dead_host_is_a_listing_error(http_root):
    listing = list_http(http_root, ["2019-02", "2019-05"], backoff=0.01, check_ranges=False)
    assert list(listing.files) == ["2019-02"]
    assert list(listing.unavailable) == ["2019-05"]
    assert "HTTP 503" in listing.unavailable["2019-05"]
    with pytest.raises(SourceListingError, match=r"ConnectionRefused|URLError"):
        list_http("http://127.0.0.1:9/events_{key}.parquet", ["2019-02"], timeout=2, backoff=0.01)


def test_hidden_and_underscore_paths_are_not_data(tmp_path):
    from partitions.keys import MonthlyPartitions
    from partitions.listing import list_source

    (tmp_path / "_truth").mkdir()
    (tmp_path / "_truth" / "x_2019-02.parquet").write_bytes(b"sidecar")
    (tmp_path / ".x_2019-03.parquet.partial").write_bytes(b"being written")
    (tmp_path / "x_2019-04.parquet").write_bytes(b"data")
    listing = list_source(
        str(tmp_path),
        MonthlyPartitions(pattern=r"^x_(?P<key>\d{4}-\d{2})\.parquet$"),
        fingerprint_cache=tmp_path.parent / "fp.json",
    )
    assert sorted(listing.files) == ["2019-04"]
    assert listing.skipped == ()


def test_files_of_other_datasets_are_summarised_in_one_line(tmp_path, cache):
    src = tmp_path / "src"
    for other in ["alpha", "beta", "gamma"]:
        for month in range(1, 13):
            put(src, f"{other}_2019-{month:02d}.parquet")
    put(src, "events_2019-02.parquet")
    put(src, "events_2019-13.parquet")
    put(src, "events_2018-12.parquet")
    listing = list_source(str(src), EVENTS, fingerprint_cache=cache)
    assert list(listing.files) == ["2019-02"]
    assert len(listing.skipped) == 38, "every file is still listed with its own reason"
    assert listing.skipped_summary() == (
        f"36 files not matching the pattern {EVENTS.pattern!r}: alpha_2019-01.parquet, alpha_2019-02.parquet, "
        "alpha_2019-03.parquet (+33 more); "
        "1 file naming months outside this asset (2019-02..): events_2018-12.parquet; "
        "1 file matching the pattern but naming no real month: events_2019-13.parquet"
    )
    assert "\n" not in listing.skipped_summary()
    assert listing.skipped_summary(limit=1).startswith(
        f"36 files not matching the pattern {EVENTS.pattern!r}: alpha_2019-01.parquet (+35 more); "
    )
    empty = list_source(str(tmp_path / "src"), EVENTS, fingerprint_cache=cache, keys=["2019-02"])
    assert empty.skipped_summary() != ""
    assert Listing({}).skipped_summary() == ""


def test_keys_restrict_a_local_listing_and_only_those_files_are_hashed(tmp_path, cache):
    src = tmp_path / "src"
    for key in ["2019-02", "2019-03", "2019-04"]:
        put(src, f"events_{key}.parquet", key.encode())
    listing = list_source(str(src), EVENTS, fingerprint_cache=cache, keys=["2019-03"])
    assert list(listing.files) == ["2019-03"]
    assert listing.skipped == (), "months not asked for are left out, not reported as skipped"
    hashed = json.loads(cache.read_text())["entries"]
    assert [Path(p).name for p in hashed] == ["events_2019-03.parquet"]
    assert list(list_source(str(src), EVENTS, fingerprint_cache=cache, keys="2019-04").files) == ["2019-04"]
