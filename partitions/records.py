"""The materialization record: what one attempt at one partition did, as it is stored in a Delta commit.

The record travels as top-level keys of the commit's ``commitInfo`` (Delta ``custom_metadata``), in the same
commit as the data it describes, so the table and its state can never disagree. Keys are the ``Final``
constants below; values are strings so any Delta reader shows them unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, cast

from partitions.keys import parse_month

KEY_FORMAT: Final = "partitions.format"
KEY_PARTITION: Final = "partitions.partition"
KEY_STATUS: Final = "partitions.status"
KEY_RUN_ID: Final = "partitions.run_id"
KEY_CODE_VERSION: Final = "partitions.code_version"
KEY_SOURCE_URI: Final = "partitions.source_uri"
KEY_SOURCE_FINGERPRINT: Final = "partitions.source_fingerprint"
KEY_ROWS_SOURCE: Final = "partitions.rows_source"
KEY_ROWS_WRITTEN: Final = "partitions.rows_written"
KEY_ROWS_QUARANTINED: Final = "partitions.rows_quarantined"
KEY_STARTED_AT: Final = "partitions.started_at"
KEY_FINISHED_AT: Final = "partitions.finished_at"
KEY_ERROR: Final = "partitions.error"
KEY_UPSTREAM: Final = "partitions.upstream"
EXTRA_PREFIX: Final = "partitions.extra."
FORMAT: Final = "1"

Status = Literal["success", "failed", "rejected"]
"""``success``: the partition was written. ``failed``: the attempt failed in a way a retry may fix (or that a
retry must check: a lost verification, a crash). ``rejected``: the input was refused as it is (unreadable bytes,
a schema no cast fixes): the same input with the same code is refused again, so the planner leaves it alone
until the source fingerprint or the code version changes (``partitions.staleness``)."""
_STATUSES: Final = ("success", "failed", "rejected")
_TEXT_FIELDS: Final = (
    (KEY_SOURCE_URI, "source_uri"),
    (KEY_SOURCE_FINGERPRINT, "source_fingerprint"),
    (KEY_STARTED_AT, "started_at"),
    (KEY_FINISHED_AT, "finished_at"),
    (KEY_ERROR, "error"),
    (KEY_UPSTREAM, "upstream"),
)
_COUNT_FIELDS: Final = (
    (KEY_ROWS_SOURCE, "rows_source"),
    (KEY_ROWS_WRITTEN, "rows_written"),
    (KEY_ROWS_QUARANTINED, "rows_quarantined"),
)


@dataclass(frozen=True)
class MaterializationRecord:
    """One attempt at one partition; ``version`` is the table version carrying it (set when read back)."""

    partition: str
    status: Status
    run_id: str
    code_version: str
    source_uri: str = ""
    source_fingerprint: str = ""
    rows_source: int | None = None
    rows_written: int = 0
    rows_quarantined: int | None = None
    started_at: str = ""
    finished_at: str = ""
    error: str = ""
    upstream: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    version: int | None = None

    def __post_init__(self) -> None:
        parse_month(self.partition)
        if self.status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}, not {self.status!r}")
        if not self.run_id:
            raise ValueError("run_id must not be empty: it is how a lost commit response is recognised")

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    @property
    def rejected(self) -> bool:
        """The input was refused as it is: retrying the same input with the same code cannot help."""
        return self.status == "rejected"

    def at_version(self, version: int | None) -> MaterializationRecord:
        """The same record, marked as carried by table ``version``."""
        return replace(self, version=version)

    def to_commit_metadata(self) -> dict[str, str]:
        """Flat string keys for Delta ``custom_metadata``; unset counts and empty texts are left out."""
        meta = {
            KEY_FORMAT: FORMAT,
            KEY_PARTITION: self.partition,
            KEY_STATUS: self.status,
            KEY_RUN_ID: self.run_id,
            KEY_CODE_VERSION: self.code_version,
        }
        for key, name in _TEXT_FIELDS:
            if value := getattr(self, name):
                meta[key] = str(value)
        for key, name in _COUNT_FIELDS:
            if (count := getattr(self, name)) is not None:
                meta[key] = str(int(count))
        for name, value in sorted(self.extra.items()):
            meta[EXTRA_PREFIX + name] = str(value)
        return meta

    @classmethod
    def from_commit_metadata(cls, meta: Mapping[str, Any], version: int | None) -> MaterializationRecord | None:
        """The record a commit carries, or None when the commit is not ours (compaction, other writers)."""
        partition, status, run_id = meta.get(KEY_PARTITION), meta.get(KEY_STATUS), meta.get(KEY_RUN_ID)
        if not isinstance(partition, str) or status not in _STATUSES or not run_id:
            return None
        texts = {name: str(meta.get(key, "") or "") for key, name in _TEXT_FIELDS}
        counts = {name: _to_int(meta.get(key)) for key, name in _COUNT_FIELDS}
        extra = {k[len(EXTRA_PREFIX) :]: str(v) for k, v in meta.items() if k.startswith(EXTRA_PREFIX)}
        try:
            return cls(
                partition=partition,
                status=cast(Status, status),
                run_id=str(run_id),
                code_version=str(meta.get(KEY_CODE_VERSION, "") or ""),
                rows_source=counts["rows_source"],
                rows_written=counts["rows_written"] or 0,
                rows_quarantined=counts["rows_quarantined"],
                extra=extra,
                version=version,
                **texts,
            )
        except Exception:  # a malformed foreign commit must not break reading everybody else's records
            return None


def _to_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class PartitionHistory:
    """The latest success of a partition and, only when newer than it, the latest failed or rejected attempt.

    A later success always wins: it clears an older failure or rejection. A later failure replaces an older
    rejection (and the other way round): only the newest unsuccessful attempt speaks for the partition.
    """

    latest_success: MaterializationRecord | None = None
    latest_failure: MaterializationRecord | None = None

    @property
    def latest(self) -> MaterializationRecord | None:
        """The newest attempt of either kind."""
        return self.latest_failure or self.latest_success

    def add(self, record: MaterializationRecord) -> PartitionHistory:
        """The history after ``record``, which must be newer than everything already folded in."""
        if record.succeeded:
            return PartitionHistory(latest_success=record, latest_failure=None)
        return PartitionHistory(latest_success=self.latest_success, latest_failure=record)


def fold_records(
    records: Iterable[MaterializationRecord], into: Mapping[str, PartitionHistory] | None = None
) -> dict[str, PartitionHistory]:
    """Fold records, oldest first, into per-partition histories (a new dict; ``into`` is not changed)."""
    histories = dict(into or {})
    for record in records:
        histories[record.partition] = histories.get(record.partition, PartitionHistory()).add(record)
    return histories
