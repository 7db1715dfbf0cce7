"""Per-partition state read straight from the Delta transaction log, at a cost bounded by recent commits.

Loading a ``DeltaTable`` snapshot replays every add action, so its cost grows with the number of data files.
Planning needs only the ``commitInfo`` line of each commit, so this module reads ``_delta_log/<v>.json``
files itself. A *state checkpoint* (``<table>/_partitions_state/<v>.json``, found through the pointer
``_last.json``) folds every record up to version ``v``; a reader loads it and then only the commits after
``v``. It is written by ``maintenance.checkpoint`` next to each Delta checkpoint and by writers once
``STATE_EVERY`` commits piled up, and it is what keeps the records once Delta log cleanup deletes old
commit files.

On S3 the commits after ``v`` come from one listing that starts after ``v`` (as delta-rs lists the log); on
other stores they are probed by version (``v+1``, ``v+2``, ... fetched in growing concurrent batches). Either
way the work is the commits since the state checkpoint, whatever the table's age or file count.

Every public function names a failing store (``partitions.storage_errors``): a store that does not answer after
s3fs's retries raises ``StorageUnavailable`` (transient: a flow retries planning), refused credentials raise
``StorageAccessDenied``; both name the table, never a credential.
"""

from __future__ import annotations

import itertools
import json
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from partitions._storage import fsspec_for, write_atomically
from partitions.errors import TableLogDamaged
from partitions.records import MaterializationRecord, PartitionHistory, fold_records
from partitions.storage_errors import display_uri, storage_errors_named

LOG_DIR: Final = "_delta_log"
STATE_DIR: Final = "_partitions_state"
STATE_POINTER: Final = "_last.json"
STATE_FORMAT: Final = 1
STATE_EVERY: Final = 100
_FIRST_BATCH, _MAX_BATCH = 2, 1024  # probe 2, 8, 32 ... commits at once: few wasted 404s, few round trips
_COMMIT_NAME = re.compile(r"(\d{20})\.json")


class RecordsGapWarning(UserWarning):
    """Commits between the newest state checkpoint and the oldest commit file are gone (cleanup ran first).

    Records in them are lost: their partitions plan as MISSING and are rebuilt, never silently kept stale.
    Run ``partitions.maintenance.checkpoint`` before log cleanup to prevent it.
    """


@dataclass(frozen=True)
class LogState:
    """The folded records of a table up to ``version`` and what reading them cost."""

    version: int
    histories: dict[str, PartitionHistory]
    state_version: int | None = None
    commits_read: int = 0


def read_records(table_uri: str, *, storage_options: Mapping[str, str] | None = None) -> dict[str, PartitionHistory]:
    """Each partition's latest success and newer failure from the Delta log; ``{}`` when there is no table."""
    return read_state(table_uri, storage_options=storage_options).histories


def read_state(
    table_uri: str, *, up_to: int | None = None, storage_options: Mapping[str, str] | None = None
) -> LogState:
    """Fold the newest state checkpoint (at or below ``up_to``) and the commits after it, up to ``up_to``."""
    with storage_errors_named(table_uri):
        try:
            return _read_state(table_uri, up_to, storage_options)
        except _DamagedCommit as damaged:
            raise TableLogDamaged(display_uri(table_uri), "", damaged.reason, damaged.where) from None


def _read_state(table_uri: str, up_to: int | None, storage_options: Mapping[str, str] | None) -> LogState:
    fs, root = fsspec_for(table_uri, storage_options)
    base_version, histories = _load_state(fs, root, up_to)
    records, last, read = _records_after(fs, root, base_version, up_to)
    behind = up_to is None or up_to > base_version
    if read == 0 and behind and _delta_checkpoint_version(fs, root) > base_version:
        # Delta log cleanup deletes only commits older than a checkpoint, so a missing next commit with a
        # newer checkpoint means a gap; only then is the log listed.
        newest = _newest_state_file(fs, root, up_to)  # the pointer may lag behind a concurrent writer
        if newest is not None and newest > base_version:
            base_version, histories = _load_state_file(fs, root, newest)
            records, last, read = _records_after(fs, root, base_version, up_to)
        if read == 0 and (first := _first_commit_after(fs, root, base_version, up_to)) is not None:
            gap = f"{table_uri}: commits {base_version + 1}..{first - 1} are gone"
            warnings.warn(RecordsGapWarning(gap), stacklevel=2)
            records, last, read = _records_after(fs, root, first - 1, up_to)
    state_version = base_version if base_version >= 0 else None
    return LogState(max(last, base_version), fold_records(records, histories), state_version, read)


def find_record(
    table_uri: str,
    partition: str,
    run_id: str,
    *,
    after_version: int,
    storage_options: Mapping[str, str] | None = None,
) -> MaterializationRecord | None:
    """The newest record of ``partition`` by ``run_id`` committed after ``after_version``, if any."""
    with storage_errors_named(table_uri, partition):
        fs, root = fsspec_for(table_uri, storage_options)
        found = None
        for record in _records_after(fs, root, after_version, None)[0]:
            if record.partition == partition and record.run_id == run_id:
                found = record
        return found


def write_state_checkpoint(
    table_uri: str, *, version: int | None = None, storage_options: Mapping[str, str] | None = None
) -> int | None:
    """Fold all records up to ``version`` (default: latest) into a state checkpoint; return its version."""
    state = read_state(table_uri, up_to=version, storage_options=storage_options)
    if state.version < 0:
        return None
    body = {
        "format": STATE_FORMAT,
        "version": state.version,
        "partitions": {key: _history_to_json(h) for key, h in sorted(state.histories.items())},
    }
    with storage_errors_named(table_uri):
        fs, root = fsspec_for(table_uri, storage_options)
        write_atomically(fs, _state_path(root, state.version), json.dumps(body, sort_keys=True).encode())
        if state.version > _pointer(fs, root):
            pointer = json.dumps({"version": state.version}).encode()
            write_atomically(fs, f"{root}/{STATE_DIR}/{STATE_POINTER}", pointer)
    return state.version


def prune_state_checkpoints(
    table_uri: str, *, keep: int = 10, storage_options: Mapping[str, str] | None = None
) -> list[int]:
    """Delete all but the newest ``keep`` state checkpoints; return the versions deleted.

    A reader that picked a deleted file through an older pointer falls back to the newest file, so pruning
    never breaks a concurrent plan.
    """
    with storage_errors_named(table_uri):
        fs, root = fsspec_for(table_uri, storage_options)
        old = sorted(_versions_in(fs, f"{root}/{STATE_DIR}"))[: -max(keep, 1)]
        for version in old:
            fs.rm_file(_state_path(root, version))
        return old


def maybe_write_state_checkpoint(
    table_uri: str,
    version: int,
    *,
    every: int = STATE_EVERY,
    storage_options: Mapping[str, str] | None = None,
) -> int | None:
    """Write a state checkpoint at ``version`` when ``every`` or more commits piled up since the last one."""
    with storage_errors_named(table_uri):
        fs, root = fsspec_for(table_uri, storage_options)
        if version - _pointer(fs, root) < every:
            return None
    return write_state_checkpoint(table_uri, version=version, storage_options=storage_options)


# -- state checkpoint files ----------------------------------------------------------------------


def _state_path(root: str, version: int) -> str:
    return f"{root}/{STATE_DIR}/{version:020d}.json"


def _pointer(fs: Any, root: str) -> int:
    try:
        return int(json.loads(fs.cat_file(f"{root}/{STATE_DIR}/{STATE_POINTER}"))["version"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return -1


def _load_state(fs: Any, root: str, up_to: int | None) -> tuple[int, dict[str, PartitionHistory]]:
    version = _pointer(fs, root)
    if version >= 0 and (up_to is None or version <= up_to):
        try:
            return _load_state_file(fs, root, version)
        except FileNotFoundError:
            pass
    newest = _newest_state_file(fs, root, up_to)
    return _load_state_file(fs, root, newest) if newest is not None else (-1, {})


def _load_state_file(fs: Any, root: str, version: int) -> tuple[int, dict[str, PartitionHistory]]:
    body = json.loads(fs.cat_file(_state_path(root, version)))
    if body.get("format") != STATE_FORMAT:
        return -1, {}
    return int(body["version"]), {k: _history_from_json(v) for k, v in body["partitions"].items()}


def _newest_state_file(fs: Any, root: str, up_to: int | None) -> int | None:
    versions = [v for v in _versions_in(fs, f"{root}/{STATE_DIR}") if up_to is None or v <= up_to]
    return max(versions, default=None)


def _history_to_json(history: PartitionHistory) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, record in (("success", history.latest_success), ("failure", history.latest_failure)):
        if record is not None:
            out[name] = {"version": record.version, "metadata": record.to_commit_metadata()}
    return out


def _history_from_json(body: Mapping[str, Any]) -> PartitionHistory:
    def record(name: str) -> MaterializationRecord | None:
        item = body.get(name)
        return MaterializationRecord.from_commit_metadata(item["metadata"], item["version"]) if item else None

    return PartitionHistory(latest_success=record("success"), latest_failure=record("failure"))


# -- commit files --------------------------------------------------------------------------------


def _commit_path(root: str, version: int) -> str:
    return f"{root}/{LOG_DIR}/{version:020d}.json"


def _versions_in(fs: Any, directory: str) -> Iterator[int]:
    try:
        names = fs.ls(directory, detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        if match := _COMMIT_NAME.fullmatch(str(name).rsplit("/", 1)[-1]):
            yield int(match[1])


def _delta_checkpoint_version(fs: Any, root: str) -> int:
    try:
        return int(json.loads(fs.cat_file(f"{root}/{LOG_DIR}/_last_checkpoint"))["version"])
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return -1


def _first_commit_after(fs: Any, root: str, version: int, up_to: int | None) -> int | None:
    versions = _versions_in(fs, f"{root}/{LOG_DIR}")
    later = [v for v in versions if v > version and (up_to is None or v <= up_to)]
    return min(later, default=None)


def _records_after(fs: Any, root: str, version: int, up_to: int | None) -> tuple[list[MaterializationRecord], int, int]:
    """Records of the consecutive commits after ``version`` (to ``up_to``), last version read, count."""
    listed = _listed_after(fs, root, version, up_to)
    if listed is None:
        return _probed_after(fs, root, version, up_to)
    run = list(itertools.takewhile(lambda pair: pair[0] == pair[1], zip(listed, itertools.count(version + 1))))
    records: list[MaterializationRecord] = []
    last = version
    for start in range(0, len(run), _MAX_BATCH):
        paths = [_commit_path(root, v) for v, _ in run[start : start + _MAX_BATCH]]
        fetched = fs.cat(paths, on_error="return")
        for path in paths:
            body = fetched.get(path, FileNotFoundError(path))
            if isinstance(body, FileNotFoundError):  # cleaned up since the listing: the gap check takes over
                return records, last, last - version
            if isinstance(body, BaseException):
                raise body
            last += 1
            if (record := _record_in(body, last)) is not None:
                records.append(record)
    return records, last, last - version


def _listed_after(fs: Any, root: str, version: int, up_to: int | None) -> list[int] | None:
    """Commit versions after ``version`` from one S3 listing that starts there (``StartAfter``), as delta-rs
    lists the log: pages of 1,000 keys, so the cost follows the commits since ``version``, not the table's age.

    None for stores without such a listing; they are probed instead.
    """
    if not hasattr(fs, "call_s3"):
        return None
    bucket, _, key = f"{root}/{LOG_DIR}/".partition("/")
    request: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
    if version >= 0:
        request["StartAfter"] = f"{key}{version:020d}.json"
    versions: list[int] = []
    while True:
        try:
            page = fs.call_s3("list_objects_v2", **request)
        except FileNotFoundError:
            return versions
        for item in page.get("Contents", []):
            if match := _COMMIT_NAME.fullmatch(item["Key"].rsplit("/", 1)[-1]):
                if up_to is not None and int(match[1]) > up_to:
                    return versions
                versions.append(int(match[1]))
        if not page.get("IsTruncated"):
            return versions
        request["ContinuationToken"] = page["NextContinuationToken"]


def _probed_after(fs: Any, root: str, version: int, up_to: int | None) -> tuple[list[MaterializationRecord], int, int]:
    """Fetch ``version+1, version+2 ...`` in growing concurrent batches until one is missing (local disks,
    stores without a start-after listing); a missing file costs one stat or one 404."""
    records: list[MaterializationRecord] = []
    last, batch = version, _FIRST_BATCH
    while up_to is None or last < up_to:
        stop = last + batch if up_to is None else min(last + batch, up_to)
        paths = [_commit_path(root, v) for v in range(last + 1, stop + 1)]
        fetched = fs.cat(paths, on_error="return")
        for path in paths:
            body = fetched.get(path, FileNotFoundError(path))
            if isinstance(body, FileNotFoundError):
                return records, last, last - version
            if isinstance(body, BaseException):
                raise body
            last += 1
            if (record := _record_in(body, last)) is not None:
                records.append(record)
        batch = min(batch * 4, _MAX_BATCH)
    return records, last, last - version


class _DamagedCommit(ValueError):
    """A commit file that is not JSON lines; :func:`read_state` names the table (``TableLogDamaged``)."""

    def __init__(self, version: int, line: int, reason: str) -> None:
        super().__init__(version, line, reason)
        self.where, self.reason = f"{LOG_DIR}/{version:020d}.json line {line}", reason


def _record_in(body: bytes, version: int) -> MaterializationRecord | None:
    """The record in a commit's ``commitInfo`` line. Every line is checked to be JSON (a damaged commit is said
    here, where the plan reads it, not at a write's commit); only ``commitInfo`` is interpreted."""
    found: MaterializationRecord | None = None
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            action = json.loads(line)
        except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
            raise _DamagedCommit(version, number, str(exc).split(":")[0]) from None
        if found is None and isinstance(action, dict) and isinstance(action.get("commitInfo"), dict):
            found = MaterializationRecord.from_commit_metadata(action["commitInfo"], version)
    return found


def damaged_commit(table_uri: str, *, storage_options: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The first commit file and line of ``table_uri``'s log that is not JSON, and why (``('', '')``: none).

    For a reader that failed on the log (delta-rs says *what* failed, not *where*): reads every commit file
    left in the log, so it is for the error path only.
    """
    fs, root = fsspec_for(table_uri, storage_options)
    for version in sorted(_versions_in(fs, f"{root}/{LOG_DIR}")):
        try:
            _record_in(fs.cat_file(_commit_path(root, version)), version)
        except _DamagedCommit as damaged:
            return damaged.where, damaged.reason
        except FileNotFoundError:
            continue
    return "", ""
