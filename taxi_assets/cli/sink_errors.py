"""A sink the command cannot use, said in one line: a path part is a file, read-only, full, a missing bucket.

Two places, both at the CLI boundary: :func:`preflight_sink` refuses a local sink whose path runs through a
file before any command reads or writes (Delta, fsspec and DuckDB would each fail later with their own
``NotADirectoryError``); :func:`explain_sink_error` turns the operating-system errors that a write into the
sink can meet half-way (no space left, a read-only file system, permission denied, a bucket that does not
exist) into :class:`~taxi_assets.errors.SinkUnusable` (exit 2) or :class:`~taxi_assets.errors.SinkFull`
(exit 9). Any other ``OSError`` stays a bug with its traceback. Nothing partial is committed in any of these
cases: a month's files become part of a table only through its one Delta commit.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Final

from partitions import is_local
from taxi_assets.errors import SinkFull, SinkUnusable, TaxiAssetsError

FULL: Final = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
READ_ONLY: Final = {errno.EROFS, errno.EACCES, errno.EPERM}
NOT_A_DIR: Final = {errno.ENOTDIR}
_ERRNO_IN_TEXT: Final = re.compile(r"(?:\[errno |\(os error )(\d+)", re.IGNORECASE)
_NO_BUCKET: Final = re.compile(r"Bucket '([^']+)' not found|NoSuchBucket|bucket does not exist", re.IGNORECASE)


def _local_path(sink: str) -> Path:
    return Path(sink.removeprefix("file://")).absolute()


def preflight_sink(sink: str) -> None:
    """Refuse a local sink that is, or lies under, a file: ``SinkUnusable`` naming that file."""
    if not is_local(sink):
        return
    path = _local_path(sink)
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                what = "is a file" if part == path else f"lies under {part}, which is a file"
                raise SinkUnusable(sink, f"the sink {what}, not a directory")
            return


def _errno_of(exc: OSError) -> int | None:
    if exc.errno is not None:
        return int(exc.errno)
    found = _ERRNO_IN_TEXT.search(str(exc))
    return int(found[1]) if found else None


def _about_sink(exc: OSError, sink: str) -> bool:
    text = f"{exc.filename or ''} {exc}"
    if is_local(sink):
        return str(_local_path(sink)) in text or sink in text
    return sink.split("://", 1)[1].split("/", 1)[0] in text  # the bucket


def explain_sink_error(exc: OSError, sink: str) -> TaxiAssetsError | None:
    """The named error for an ``OSError`` that a use of ``sink`` caused, or None (then it is a bug)."""
    code = _errno_of(exc)
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if code in FULL:  # the sink's file system, or the temporary space a write goes through
        return SinkFull(sink, detail)
    if not _about_sink(exc, sink):
        return None
    if _NO_BUCKET.search(str(exc)):
        return SinkUnusable(sink, f"its bucket does not exist ({detail}); create the bucket or fix the URI")
    if code in READ_ONLY:
        return SinkUnusable(sink, f"the sink is not writable ({detail}); use a writable directory or bucket")
    if code in NOT_A_DIR:
        return SinkUnusable(sink, f"a part of the sink's path is a file ({detail})")
    return None
