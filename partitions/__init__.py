"""Generic partitioned-asset engine whose state lives in the Delta transaction log."""

from partitions.code_version import code_version
from partitions.delta_log import (
    RecordsGapWarning,
    find_record,
    read_records,
    read_state,
    write_state_checkpoint,
)
from partitions.errors import (
    CommitConflictExhausted,
    DuplicatePartitionSource,
    InvalidPartitionKey,
    PartitionMismatch,
    PartitionsError,
    SourceListingError,
    Transient,
)
from partitions.keys import MonthlyPartitions, month_bounds, month_range, parse_month, parse_selection
from partitions.overwrite import app_id, commit_files, overwrite_partition, reconcile, record_failure
from partitions.records import MaterializationRecord, PartitionHistory
from partitions.source import Listing, SkippedFile, SourceFile
from partitions.staleness import PartitionState, PlanRow, plan, upstream_sources

__all__ = [
    "CommitConflictExhausted",
    "DuplicatePartitionSource",
    "InvalidPartitionKey",
    "Listing",
    "MaterializationRecord",
    "MonthlyPartitions",
    "PartitionHistory",
    "PartitionMismatch",
    "PartitionState",
    "PartitionsError",
    "PlanRow",
    "RecordsGapWarning",
    "SkippedFile",
    "SourceFile",
    "SourceListingError",
    "Transient",
    "app_id",
    "code_version",
    "commit_files",
    "find_record",
    "month_bounds",
    "month_range",
    "overwrite_partition",
    "parse_month",
    "parse_selection",
    "plan",
    "read_records",
    "read_state",
    "reconcile",
    "record_failure",
    "upstream_sources",
    "write_state_checkpoint",
]
