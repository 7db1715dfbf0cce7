"""Turn a URI plus delta-rs style ``storage_options`` into the filesystem objects other libraries want.

One vocabulary for credentials across the engine: the ``AWS_*`` names delta-rs takes (any case). This module
renders them for s3fs (listing, log reads) and for ``pyarrow.fs`` (readers). It never reads credentials from the
environment: with no keys given, s3fs and pyarrow fall back on the default AWS chain themselves.

Every client it builds has bounded waits (:func:`network_timeout`): one attempt waits at most ``timeout`` seconds
to connect and, once connected, for the next bytes (default 10 s, ``$PARTITIONS_NETWORK_TIMEOUT`` or a
``timeout=`` argument), and a request is tried :data:`NETWORK_ATTEMPTS` times with jittered exponential backoff.
A silent endpoint therefore fails a call in about ``3 x timeout`` plus a few seconds of backoff (~35 s by
default), as a named transient error, instead of hanging for minutes.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import fsspec
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

from partitions.errors import InvalidSetting

S3_SCHEMES = ("s3://", "s3a://")
S3_MAX_ATTEMPTS = 5  # pyarrow S3 requests: first try + retries, exponential backoff (AWS standard strategy)
NETWORK_TIMEOUT_ENV: Final = "PARTITIONS_NETWORK_TIMEOUT"
DEFAULT_NETWORK_TIMEOUT: Final = 10.0
NETWORK_ATTEMPTS: Final = 3  # one request: first try + 2 retries (botocore standard mode, the HTTP lister)
_SECONDS: Final = "a number of seconds > 0, e.g. 10"


def network_timeout(timeout: float | None = None) -> float:
    """Seconds one network attempt may wait to connect, and then for the next bytes of the answer.

    ``timeout`` when given, else ``$PARTITIONS_NETWORK_TIMEOUT``, else :data:`DEFAULT_NETWORK_TIMEOUT`. Read at
    each call (never at import), so a process can change it between runs.

    Raises:
        InvalidSetting: not a finite number of seconds > 0.
    """
    name, raw = "timeout", str(timeout)
    if timeout is None:
        raw = os.environ.get(NETWORK_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_NETWORK_TIMEOUT
        name = NETWORK_TIMEOUT_ENV
        try:
            timeout = float(raw)
        except ValueError:
            raise InvalidSetting(name, raw, _SECONDS) from None
    if not (math.isfinite(timeout) and timeout > 0):
        raise InvalidSetting(name, raw, _SECONDS)
    return float(timeout)


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEMES)


def is_local(uri: str) -> bool:
    """A path on this machine's file system: no scheme, or ``file://``."""
    return "://" not in uri or uri.startswith("file://")


def _options(storage_options: Mapping[str, str] | None) -> dict[str, str]:
    return {key.upper(): str(value) for key, value in (storage_options or {}).items()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def s3_attempts() -> int:
    """Tries of one S3 request by botocore: ``$AWS_MAX_ATTEMPTS`` when set (botocore reads it), else 3."""
    try:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS") or NETWORK_ATTEMPTS))
    except ValueError:
        return NETWORK_ATTEMPTS


def s3fs_kwargs(storage_options: Mapping[str, str] | None, *, timeout: float | None = None) -> dict[str, Any]:
    """Keyword arguments for ``s3fs.S3FileSystem`` from delta-rs ``AWS_*`` options (unknown keys ignored).

    botocore waits ``timeout`` to connect and to read, and retries a request in its "standard" mode: 5xx,
    throttling, timeouts and connection errors, :data:`NETWORK_ATTEMPTS` tries in all, exponential backoff with
    full jitter (https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html).
    ``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS`` in the environment, when set, are left to decide instead.
    """
    opts = _options(storage_options)
    seconds = network_timeout(timeout)
    retries: dict[str, Any] = {}  # the standard AWS variables, when set, still decide (botocore reads them)
    if not os.environ.get("AWS_RETRY_MODE"):
        retries["mode"] = "standard"
    if not os.environ.get("AWS_MAX_ATTEMPTS"):
        retries["total_max_attempts"] = s3_attempts()
    kwargs: dict[str, Any] = {
        "config_kwargs": {"connect_timeout": seconds, "read_timeout": seconds, "retries": retries}
    }
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


def fsspec_for(
    uri: str, storage_options: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> tuple[Any, str]:
    """An fsspec filesystem for ``uri`` and the path inside it (no trailing slash), with bounded waits.

    Listings are never cached, so a plan sees the store as it is now, not as an earlier call saw it. The
    instance itself (its connection pool) is shared per process and options: a new client costs ~0.2 s.
    """
    if is_s3(uri):
        fs = fsspec.filesystem("s3", use_listings_cache=False, **s3fs_kwargs(storage_options, timeout=timeout))
        # botocore retries (standard mode); s3fs's own loop would multiply its attempts by s3fs's (5 by default):
        # a silent endpoint held a plan for 7 minutes. One s3fs try keeps the bound at NETWORK_ATTEMPTS attempts.
        fs.retries = 1
        return fs, uri.split("://", 1)[1].rstrip("/")
    if uri.startswith(("http://", "https://")):
        kwargs: dict[str, Any] = dict(storage_options or {})
        kwargs.setdefault("client_kwargs", {"timeout": http_client_timeout(timeout)})
        fs, path = fsspec.core.url_to_fs(uri, **kwargs)
        return fs, str(path).rstrip("/")
    if not is_local(uri):
        fs, path = fsspec.core.url_to_fs(uri, **dict(storage_options or {}))
        return fs, str(path).rstrip("/")
    path = uri.removeprefix("file://")
    return LocalFileSystem(), str(Path(path).expanduser().resolve())


def http_client_timeout(timeout: float | None = None) -> Any:
    """The ``aiohttp.ClientTimeout`` fsspec's HTTP filesystem gets: connect and per-read waits, no total cap
    (a large file may take long to stream; only silence is bounded)."""
    import aiohttp  # fsspec's HTTP backend: needed only for http(s) URIs

    seconds = network_timeout(timeout)
    return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)


def delta_storage_options(
    uri: str, storage_options: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> dict[str, str]:
    """``storage_options`` for delta-rs with bounded waits on object stores, the caller's own values kept.

    delta-rs (object_store) waits 30 s per request and retries for up to 3 minutes by default; this sets
    ``connect_timeout`` and ``timeout`` to ``timeout`` and ``retry_timeout`` to ``NETWORK_ATTEMPTS x timeout``
    (https://delta-io.github.io/delta-rs/integrations/object-storage/special_configuration). Local paths are
    left as they are.
    """
    options = dict(storage_options or {})
    if is_local(uri):
        return options
    millis = round(network_timeout(timeout) * 1000)
    given = {key.lower() for key in options}
    defaults = {
        "connect_timeout": f"{millis}ms",
        "timeout": f"{millis}ms",
        "retry_timeout": f"{millis * NETWORK_ATTEMPTS}ms",
    }
    return {**{k: v for k, v in defaults.items() if k not in given}, **options}


def pyarrow_fs_for(
    uri: str, storage_options: Mapping[str, str] | None = None, *, timeout: float | None = None
) -> tuple[pafs.FileSystem, str]:
    """A ``pyarrow.fs`` filesystem for ``uri`` and the path inside it, for Arrow and Parquet readers."""
    if not is_s3(uri):
        fs, path = fsspec_for(uri, storage_options, timeout=timeout)
        if isinstance(fs, LocalFileSystem):
            return pafs.LocalFileSystem(), path
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    opts = _options(storage_options)
    # pyarrow's default is 3 attempts: three 503s in a row, or a 2 s network cut, would fail a month's read
    # or upload; 5 attempts with the SDK's exponential backoff (~1, 2, 4, 8 s at most) ride out a few seconds.
    # pyarrow makes more attempts (S3_MAX_ATTEMPTS) than the other clients: each gets a share of the same bound,
    # NETWORK_ATTEMPTS x timeout in all (at least 1 s: curl's low-speed limit counts whole seconds on Linux).
    seconds = max(1.0, network_timeout(timeout) * NETWORK_ATTEMPTS / S3_MAX_ATTEMPTS)
    kwargs: dict[str, Any] = {
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=S3_MAX_ATTEMPTS),
        "connect_timeout": seconds,
        "request_timeout": seconds,
    }
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
