"""List the source files of a monthly asset (local directory, ``s3://`` prefix, or an HTTPS URL template).

Each adapter turns what the store says about a file into a fingerprint that changes when the content does:
a content hash on a local disk (cached by path, size, mtime, ctime and inode, so a plan never re-hashes
unchanged files and never trusts a kept mtime on new bytes),
ETag and size on S3 (one recursive listing), ETag or Last-Modified and length over HTTPS (one HEAD per month).
Classification is shared: a name that does not match, an impossible month, a month outside the asset's range
are *skipped* with a reason; two files for one month are *duplicates* (see ``Listing``), never a guess.

A source degrades per month, not as a whole: an HTTP HEAD is retried with jittered backoff on 5xx, timeouts and
connection errors, and a month still unanswered is reported in ``Listing.unavailable`` while the others go on
(S3's one listing is retried by botocore the same way; see ``_storage``). Only a server that answers no probe
at all fails the listing (``SourceListingError``), in about ``3 x timeout``, never minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pyarrow.fs as pafs

from partitions._storage import fsspec_for, is_s3, network_timeout, pyarrow_fs_for, s3_attempts, write_atomically
from partitions.errors import InvalidPartitionKey, SourceListingError, SourceNotFound, StorageAccessDenied
from partitions.http_listing import list_http, require_range_support
from partitions.keys import MonthlyPartitions, month_range, parse_month
from partitions.source import Listing, SkippedFile, SourceFile
from partitions.storage_errors import classify_storage_error, display_uri

__all__ = [
    "Listing",
    "SkippedFile",
    "SourceFile",
    "filesystem_for",
    "list_http",
    "list_source",
    "open_input",
    "require_range_support",
]

_Entry = tuple[str, int, str | None, datetime | None]  # uri, size, fingerprint if known, last modified
_CACHE_FORMAT = 2  # 2: entries carry ctime, inode and when they were hashed (format 1: re-hashed once)
_RACY_NS = 1_000_000_000  # an entry hashed within 1 s of the file's last change is checked again next time


def list_source(
    uri: str,
    partitions: MonthlyPartitions,
    *,
    storage_options: Mapping[str, str] | None = None,
    fingerprint_cache: str | Path | None = None,
    keys: Iterable[str] | None = None,
    timeout: float | None = None,
) -> Listing:
    """One file per month under ``uri`` (searched recursively), plus what was skipped, ambiguous or unanswered.

    ``uri`` is a local directory, ``s3://bucket/prefix``, or an ``https://`` template containing ``{key}``.
    ``keys`` restricts the listing to those months: an HTTP template probes only them (by default every month
    from ``partitions.start`` to ``partitions.end``), a local directory hashes only their files, and files of
    other months are left out (not reported as skipped). ``fingerprint_cache`` is the JSON file remembering
    local content hashes; by default ``$XDG_CACHE_HOME/partitions/fingerprints.json`` (``~/.cache/...``), never
    inside the source directory. ``timeout`` bounds each network attempt (see ``_storage.network_timeout``).

    Raises:
        SourceNotFound: a local ``uri`` that is not a directory (not transient: a wrong path stays wrong).
        SourceListingError: the store or server did not answer at all (transient).
        SourceRangeUnsupported: an HTTP server that ignores Range requests (no file could be read from it).
        StorageAccessDenied: the store refused the credentials.
    """
    wanted = None if keys is None else {parse_month(k) for k in ([keys] if isinstance(keys, str) else keys)}
    if uri.startswith(("http://", "https://")):
        if wanted is None:
            if partitions.start is None or partitions.end is None:
                raise ValueError(f"{uri}: an HTTP template needs keys=..., or start and end on the partitions")
            wanted = set(month_range(partitions.start, partitions.end))
        return list_http(uri, sorted(wanted), partitions=partitions, timeout=timeout)
    if is_s3(uri):
        return _classify(_s3_entries(uri, storage_options, timeout), partitions, fingerprint=None, wanted=wanted)
    return _list_local(uri, partitions, fingerprint_cache, wanted)


def open_input(
    uri: str, *, storage_options: Mapping[str, str] | None = None, timeout: float | None = None
) -> IO[bytes]:
    """Open a source file for binary reading (local path, ``s3://``, ``https://``); the caller closes it.

    Raises:
        SourceRangeUnsupported: an ``http(s)://`` server that ignores Range requests.
    """
    if uri.startswith(("http://", "https://")):
        require_range_support(uri, timeout=timeout)
    fs, path = fsspec_for(uri, storage_options, timeout=timeout)
    handle: IO[bytes] = fs.open(path, "rb")
    return handle


def filesystem_for(
    uri: str, storage_options: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> tuple[pafs.FileSystem, str]:
    """A ``pyarrow.fs`` filesystem and the path inside it, for ``pyarrow.parquet``/``pyarrow.dataset``.

    Raises:
        SourceRangeUnsupported: ``uri`` is an ``http(s)://`` file on a server that ignores Range requests.
    """
    if uri.startswith(("http://", "https://")):
        require_range_support(uri, timeout=timeout)
    return pyarrow_fs_for(uri, storage_options, timeout=timeout)


# -- classification --------------------------------------------------------------------------------


def _classify(
    entries: Iterable[_Entry],
    partitions: MonthlyPartitions,
    *,
    fingerprint: Any,
    wanted: set[str] | None = None,
) -> Listing:
    """Sort ``(uri, size, fingerprint, last_modified)`` entries into files, skipped and duplicates.

    ``fingerprint`` computes missing fingerprints, called only for files that end up used. Files of months not
    in ``wanted`` (when given) are left out: they were not asked for.
    """
    by_key: dict[str, list[_Entry]] = {}
    skipped: list[SkippedFile] = []
    for entry in sorted(entries):
        uri = entry[0]
        name = uri.rsplit("/", 1)[-1]
        raw = partitions.raw_key_for(name)
        if raw is None:
            pattern = f"the pattern {partitions.pattern!r}"
            skipped.append(SkippedFile(uri, f"name does not match {pattern}", f"not matching {pattern}"))
            continue
        try:
            key = parse_month(raw)
        except InvalidPartitionKey:
            reason = f"name matches the pattern but {raw!r} is not a real month"
            skipped.append(SkippedFile(uri, reason, "matching the pattern but naming no real month"))
            continue
        if not partitions.contains(key):
            side = (
                f"before the first month {partitions.start}"
                if partitions.start and key < partitions.start
                else (f"after the last month {partitions.end}")
            )
            span = f"{partitions.start or '...'}..{partitions.end or ''}"
            reason = f"month {key} is {side} of this asset"
            skipped.append(SkippedFile(uri, reason, f"naming months outside this asset ({span})"))
            continue
        if wanted is not None and key not in wanted:
            continue
        by_key.setdefault(key, []).append(entry)
    duplicates = {k: tuple(e[0] for e in v) for k, v in sorted(by_key.items()) if len(v) > 1}
    files = {}
    for key, ((uri, size, fp, modified),) in ((k, v) for k, v in sorted(by_key.items()) if len(v) == 1):
        files[key] = SourceFile(key, uri, size, fp if fp is not None else fingerprint(uri), modified)
    return Listing(files=files, skipped=tuple(skipped), duplicates=duplicates)


def _hidden(relative: str) -> bool:
    """Paths under the root whose name or folder starts with ``_`` or ``.`` are not data (Hadoop convention):
    side-cars, ``_SUCCESS`` markers and files still being written (``.name.partial``) are ignored silently."""
    return any(part.startswith(("_", ".")) for part in relative.strip("/").split("/") if part)


# -- S3 --------------------------------------------------------------------------------------------


def _s3_entries(uri: str, storage_options: Mapping[str, str] | None, timeout: float | None) -> list[_Entry]:
    """One recursive listing; botocore retries it (standard mode, ``NETWORK_ATTEMPTS`` tries, bounded waits)."""
    seconds = network_timeout(timeout)
    fs, path = fsspec_for(uri, storage_options, timeout=seconds)
    try:
        found = fs.find(path, detail=True)
    except Exception as exc:  # botocore/aiohttp errors are not all OSError; the chain keeps the traceback
        failure = classify_storage_error(exc)
        if failure is not None and failure.kind == "denied":  # not transient: retrying cannot fix credentials
            raise StorageAccessDenied(display_uri(uri), "", failure.reason) from exc
        if failure is not None and failure.kind == "unavailable":
            detail = f"{failure.reason} after {s3_attempts()} attempts of up to {seconds:g} s"
        else:
            detail = f"{type(exc).__name__}: {exc}"
        raise SourceListingError(display_uri(uri), detail) from exc
    entries: list[_Entry] = []
    for key, info in found.items():
        if _hidden(key[len(path) :]):
            continue
        size = int(info.get("size") or 0)
        etag = info.get("ETag") or info.get("etag") or ""
        modified = info.get("LastModified")
        entries.append((f"s3://{key}", size, f"etag:{etag}/size:{size}", modified))
    return entries


# -- local directory -------------------------------------------------------------------------------


def _list_local(
    uri: str, partitions: MonthlyPartitions, cache_file: str | Path | None, wanted: set[str] | None
) -> Listing:
    root = Path(uri.removeprefix("file://")).expanduser()
    if not root.is_dir():  # a wrong path, not an outage: not transient, so nothing retries it
        raise SourceNotFound(str(root), "is a file, not a directory" if root.exists() else "does not exist")
    entries: list[_Entry] = []
    stats: dict[str, os.stat_result] = {}
    for path in root.rglob("*"):
        if path.is_file() and not _hidden(str(path.relative_to(root))):
            stat = path.stat()
            stats[str(path.resolve())] = stat
            modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
            entries.append((str(path.resolve()), stat.st_size, None, modified))
    cache = _FingerprintCache(Path(cache_file) if cache_file is not None else _default_cache_file())
    listing = _classify(entries, partitions, fingerprint=lambda p: cache.fingerprint(p, stats[p]), wanted=wanted)
    cache.save()
    return listing


def _default_cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "partitions" / "fingerprints.json"


class _FingerprintCache:
    """Content hashes in one JSON file replaced atomically, trusted only while nothing about the file could lie.

    An entry is reused when the file's size, mtime, ctime and inode all match it, and its ctime was at least
    :data:`_RACY_NS` older than the moment it was hashed. mtime alone can lie: ``cp -p``, ``tar`` and
    ``os.utime`` put an old mtime on new bytes, but the kernel sets ctime to the time of the change and no
    user call can set it back; a replacement by rename brings another inode. A file changed within the same
    timestamp tick as its hashing keeps its ctime, so an entry hashed that close to its ctime is "racily clean"
    (as git calls it) and hashed again next time. Two processes saving at once each write a complete file;
    the loser's new entries are only re-hashed later.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.entries: dict[str, dict[str, Any]] = {}
        self.dirty = False
        try:
            body = json.loads(file.read_text())
            if body.get("format") == _CACHE_FORMAT:
                self.entries = dict(body["entries"])
        except (OSError, ValueError, KeyError, AttributeError):
            pass

    def fingerprint(self, path: str, stat: os.stat_result) -> str:
        seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "ino": stat.st_ino}
        hit = self.entries.get(path)
        if (
            hit
            and all(hit.get(k) == v for k, v in seen.items())
            and stat.st_ctime_ns + _RACY_NS <= hit.get("hashed_ns", 0)
        ):
            return str(hit["fingerprint"])
        hashed_ns = time.time_ns()
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        value = f"sha256:{digest}"
        self.entries[path] = {**seen, "hashed_ns": hashed_ns, "fingerprint": value}
        self.dirty = True
        return value

    def save(self) -> None:
        if not self.dirty:
            return
        try:
            current = json.loads(self.file.read_text()).get("entries", {})
        except (OSError, ValueError, AttributeError):
            current = {}
        body = {"format": _CACHE_FORMAT, "entries": {**current, **self.entries}}
        fs, path = fsspec_for(str(self.file))
        try:
            write_atomically(fs, path, json.dumps(body, sort_keys=True).encode())
        except OSError as exc:  # a read-only home costs re-hashing next time, not the listing
            warnings.warn(f"fingerprint cache {self.file} not written: {exc}", stacklevel=3)
