"""Generic partitioned-asset engine whose state lives in the Delta transaction log."""

from partitions._storage import NETWORK_TIMEOUT_ENV, delta_storage_options, network_timeout
from partitions.code_version import code_version
from partitions.delta_log import (
    LogState,
    RecordsGapWarning,
    find_record,
    maybe_write_state_checkpoint,
    prune_state_checkpoints,
    read_records,
    read_state,
    write_state_checkpoint,
)
from partitions.errors import (
    CommitConflictExhausted,
    DuplicatePartitionSource,
    InvalidPartitionKey,
    InvalidSetting,
    PartitionMismatch,
    PartitionsError,
    PartitionUnavailable,
    SourceListingError,
    SourceNotFound,
    SourceRangeUnsupported,
    StorageAccessDenied,
    StorageUnavailable,
    Transient,
)
from partitions.files import (
    add_action_for,
    missing_data_files,
    partition_file_path,
    stats_json,
    write_partition_file,
)
from partitions.http_listing import list_http, require_range_support
from partitions.keys import MonthlyPartitions, month_bounds, month_range, parse_month, parse_selection
from partitions.listing import filesystem_for, list_source, open_input
from partitions.maintenance import checkpoint, compact, vacuum
from partitions.overwrite import app_id, commit_files, overwrite_partition, reconcile, record_failure
from partitions.records import MaterializationRecord, PartitionHistory
from partitions.source import Listing, SkippedFile, SourceFile
from partitions.staleness import PartitionState, PlanRow, Verifications, plan, upstream_sources
from partitions.storage_errors import (
    StorageFailure,
    classify_storage_error,
    is_storage_unavailable,
    named_storage_error,
    open_table,
    storage_errors_named,
)

__all__ = [
    "NETWORK_TIMEOUT_ENV",
    "CommitConflictExhausted",
    "DuplicatePartitionSource",
    "InvalidPartitionKey",
    "InvalidSetting",
    "Listing",
    "LogState",
    "MaterializationRecord",
    "MonthlyPartitions",
    "PartitionHistory",
    "PartitionMismatch",
    "PartitionState",
    "PartitionUnavailable",
    "PartitionsError",
    "PlanRow",
    "RecordsGapWarning",
    "SkippedFile",
    "SourceFile",
    "SourceListingError",
    "SourceNotFound",
    "SourceRangeUnsupported",
    "StorageAccessDenied",
    "StorageFailure",
    "StorageUnavailable",
    "Transient",
    "Verifications",
    "add_action_for",
    "app_id",
    "checkpoint",
    "classify_storage_error",
    "code_version",
    "commit_files",
    "compact",
    "delta_storage_options",
    "filesystem_for",
    "find_record",
    "is_storage_unavailable",
    "list_http",
    "list_source",
    "maybe_write_state_checkpoint",
    "missing_data_files",
    "month_bounds",
    "month_range",
    "named_storage_error",
    "network_timeout",
    "open_input",
    "open_table",
    "overwrite_partition",
    "parse_month",
    "parse_selection",
    "partition_file_path",
    "plan",
    "prune_state_checkpoints",
    "read_records",
    "read_state",
    "reconcile",
    "record_failure",
    "require_range_support",
    "stats_json",
    "storage_errors_named",
    "upstream_sources",
    "vacuum",
    "write_partition_file",
    "write_state_checkpoint",
]
