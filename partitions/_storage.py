"""Turn a URI plus delta-rs style ``storage_options`` into the filesystem objects other libraries want.

One vocabulary for credentials across the engine: the ``AWS_*`` names delta-rs takes (any case). This module
renders them for s3fs (listing, log reads) and for ``pyarrow.fs`` (readers). It never reads the environment:
with no keys given, s3fs and pyarrow fall back on the default AWS chain themselves.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

S3_SCHEMES = ("s3://", "s3a://")
S3_MAX_ATTEMPTS = 5  # pyarrow S3 requests: first try + retries, exponential backoff (AWS standard strategy)


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEMES)


def _options(storage_options: Mapping[str, str] | None) -> dict[str, str]:
    return {key.upper(): str(value) for key, value in (storage_options or {}).items()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def s3fs_kwargs(storage_options: Mapping[str, str] | None) -> dict[str, Any]:
    """Keyword arguments for ``s3fs.S3FileSystem`` from delta-rs ``AWS_*`` options (unknown keys ignored)."""
    opts = _options(storage_options)
    kwargs: dict[str, Any] = {}
    if _truthy(opts.get("ANON")) or _truthy(opts.get("AWS_SKIP_SIGNATURE")):
        kwargs["anon"] = True
    if "AWS_ACCESS_KEY_ID" in opts:
        kwargs["key"] = opts["AWS_ACCESS_KEY_ID"]
    if "AWS_SECRET_ACCESS_KEY" in opts:
        kwargs["secret"] = opts["AWS_SECRET_ACCESS_KEY"]
    if "AWS_SESSION_TOKEN" in opts:
        kwargs["token"] = opts["AWS_SESSION_TOKEN"]
    if endpoint := opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT"):
        kwargs["endpoint_url"] = endpoint
    if region := opts.get("AWS_REGION") or opts.get("AWS_DEFAULT_REGION"):
        kwargs["client_kwargs"] = {"region_name": region}
    return kwargs


def fsspec_for(uri: str, storage_options: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """An fsspec filesystem for ``uri`` and the path inside it (no trailing slash).

    Listings are never cached, so a plan sees the store as it is now, not as an earlier call saw it. The
    instance itself (its connection pool) is shared per process and options: a new client costs ~0.2 s.
    """
    if is_s3(uri):
        fs = fsspec.filesystem("s3", use_listings_cache=False, **s3fs_kwargs(storage_options))
        return fs, uri.split("://", 1)[1].rstrip("/")
    if "://" in uri and not uri.startswith("file://"):
        fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
        return fs, str(path).rstrip("/")
    path = uri.removeprefix("file://")
    return LocalFileSystem(), str(Path(path).expanduser().resolve())


def pyarrow_fs_for(uri: str, storage_options: Mapping[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """A ``pyarrow.fs`` filesystem for ``uri`` and the path inside it, for Arrow and Parquet readers."""
    if not is_s3(uri):
        fs, path = fsspec_for(uri, storage_options)
        if isinstance(fs, LocalFileSystem):
            return pafs.LocalFileSystem(), path
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    opts = _options(storage_options)
    # pyarrow's default is 3 attempts: three 503s in a row, or a 2 s network cut, would fail a month's read
    # or upload; 5 attempts with the SDK's exponential backoff (~1, 2, 4, 8 s at most) ride out a few seconds.
    kwargs: dict[str, Any] = {"retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS)}
    if _truthy(opts.get("ANON")) or _truthy(opts.get("AWS_SKIP_SIGNATURE")):
        kwargs["anonymous"] = True
    for option, name in (
        ("AWS_ACCESS_KEY_ID", "access_key"),
        ("AWS_SECRET_ACCESS_KEY", "secret_key"),
        ("AWS_SESSION_TOKEN", "session_token"),
        ("AWS_REGION", "region"),
    ):
        if option in opts:
            kwargs[name] = opts[option]
    if endpoint := opts.get("AWS_ENDPOINT_URL") or opts.get("AWS_ENDPOINT"):
        scheme, _, host = endpoint.rpartition("://")
        kwargs["endpoint_override"] = host or endpoint
        kwargs["scheme"] = scheme or "https"
    return pafs.S3FileSystem(**kwargs), uri.split("://", 1)[1].rstrip("/")


def write_atomically(fs: Any, path: str, data: bytes) -> None:
    """Write ``data`` so a concurrent reader sees the old file or the whole new one, never a part.

    On a local disk: a temporary sibling then ``os.replace``. On object stores a single PUT is already atomic.
    """
    if isinstance(fs, LocalFileSystem):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    else:
        fs.pipe_file(path, data)
