"""Errors of the partitions engine: one root, one class per condition, facts as attributes.

Every constructor hands all its arguments to ``super().__init__`` so the exception pickles cleanly when a
worker process sends it back. Messages end with the next step and never contain a storage option value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar


class PartitionsError(Exception):
    """Root of every expected failure of the engine; ``exit_code`` is what a CLI should return."""

    exit_code: ClassVar[int] = 1


class Transient:
    """Marker mix-in: the failure may pass on retry (network, throttling, a race lost)."""


class InvalidPartitionKey(PartitionsError):
    """A partition key or selection that is not a real month."""

    exit_code: ClassVar[int] = 2

    def __init__(self, key: str, expected: str = "YYYY-MM with a month 01..12, e.g. 2019-02") -> None:
        super().__init__(key, expected)
        self.key, self.expected = key, expected

    def __str__(self) -> str:
        return f"invalid partition key {self.key!r}: expected {self.expected}; fix the key and re-run"


class DuplicatePartitionSource(PartitionsError):
    """Two source files map to one partition key; the engine refuses to guess which one is right."""

    exit_code: ClassVar[int] = 3

    def __init__(self, partition: str, uris: Sequence[str]) -> None:
        super().__init__(partition, tuple(uris))
        self.partition, self.uris = partition, tuple(uris)

    def __str__(self) -> str:
        listed = ", ".join(self.uris)
        return (
            f"{self.partition}: {len(self.uris)} source files map to this partition ({listed}); "
            "remove or rename all but one and re-run"
        )


class SourceListingError(Transient, PartitionsError):
    """Listing or probing the source failed in a way a retry may fix (timeout, 5xx, network)."""

    exit_code: ClassVar[int] = 3

    def __init__(self, uri: str, detail: str) -> None:
        super().__init__(uri, detail)
        self.uri, self.detail = uri, detail

    def __str__(self) -> str:
        return f"cannot list source {self.uri}: {self.detail}; check the network and credentials, then retry"


class PartitionUnavailable(Transient, PartitionsError):
    """The source did not answer for one partition after the lister's retries; the other partitions went on.

    Transient: the partition keeps its last committed version, and the next run probes it again.
    """

    exit_code: ClassVar[int] = 3

    def __init__(self, partition: str, detail: str) -> None:
        super().__init__(partition, detail)
        self.partition, self.detail = partition, detail

    def __str__(self) -> str:
        return (
            f"{self.partition}: the source did not answer ({self.detail}); the partition keeps its last version: "
            "retry later"
        )


class SourceRangeUnsupported(PartitionsError):
    """An HTTP source server ignores Range requests, so no reader can fetch part of a file (a parquet footer).

    Not the file's fault and not transient: the same server answers the same way, whichever file is asked for.
    """

    exit_code: ClassVar[int] = 3

    def __init__(self, uri: str, evidence: str) -> None:
        super().__init__(uri, evidence)
        self.uri, self.evidence = uri, evidence

    def __str__(self) -> str:
        return (
            f"the server of {self.uri} does not support HTTP Range requests ({self.evidence}); readers fetch parts "
            "of each file, so none can be read from it: serve the files from a server that answers ranged GETs "
            "with 206 Partial Content, or copy them to a local directory or an s3:// prefix and use that as source"
        )


class InvalidSetting(PartitionsError):
    """A setting of the engine (an argument or its environment variable) has a value it cannot use."""

    exit_code: ClassVar[int] = 2

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(name, value, expected)
        self.name, self.value, self.expected = name, value, expected

    def __str__(self) -> str:
        return f"{self.name}={self.value!r} is not valid: expected {self.expected}; fix it and re-run"


class SourceNotFound(PartitionsError):
    """The local source directory does not exist (or is a file): a wrong path, which no retry can fix."""

    exit_code: ClassVar[int] = 2

    def __init__(self, uri: str, problem: str = "does not exist") -> None:
        super().__init__(uri, problem)
        self.uri, self.problem = uri, problem

    def __str__(self) -> str:
        return f"source directory {self.uri} {self.problem}; fix the source path given to this run, then re-run"


class StorageUnavailable(Transient, PartitionsError):
    """The table's store did not answer (connection cut, timeout, 5xx) after the client's own retries.

    ``partition`` is empty when no partition was being written (reading a table's log while planning).
    ``partitions.storage_errors`` decides which client errors mean this; ``detail`` is its short reason.
    """

    exit_code: ClassVar[int] = 3

    def __init__(self, table_uri: str, partition: str, detail: str) -> None:
        super().__init__(table_uri, partition, detail)
        self.table_uri, self.partition, self.detail = table_uri, partition, detail

    def __str__(self) -> str:
        if not self.partition:
            return (
                f"the store of {self.table_uri} did not answer ({self.detail}); nothing was changed: "
                "retry later (a flow task retries this by itself)"
            )
        return (
            f"{self.partition}: the store of {self.table_uri} did not answer ({self.detail}); the partition keeps "
            "its last committed version and plans stale until a run completes it: retry later"
        )


class StorageAccessDenied(PartitionsError):
    """The store refused the credentials or their rights (403, invalid key, bad signature, expired token).

    Not transient: a retry with the same credentials gets the same answer, so a flow must not retry it.
    ``partition`` is empty when no partition was being written. The message names the URI, never a key.
    """

    exit_code: ClassVar[int] = 2

    def __init__(self, uri: str, partition: str, detail: str) -> None:
        super().__init__(uri, partition, detail)
        self.uri, self.partition, self.detail = uri, partition, detail

    def __str__(self) -> str:
        where = f"{self.partition}: " if self.partition else ""
        if "://" not in self.uri or self.uri.startswith("file://"):
            remedy = "give the user running it read and write rights on that path, then re-run"
        else:
            remedy = (
                "check the credentials handed to the run (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / "
                "AWS_SESSION_TOKEN or the credentials block they come from), their rights on this bucket, "
                "and the endpoint and region, then re-run"
            )
        return f"{where}access to {self.uri} was refused ({self.detail}); nothing was changed: {remedy}"


class TableLogDamaged(PartitionsError):
    """A table's Delta log cannot be read: a commit file is not valid JSON (a partial copy, an edit, a disk fault).

    Not transient: every reader and writer of the table fails the same way until the file is repaired, so a flow
    must not retry it. Found before anything is written when the plan reads the log; a write that finds it at its
    commit removes the files it had put down. ``commit`` names the damaged file and line when they were found.
    """

    exit_code: ClassVar[int] = 2

    def __init__(self, table_uri: str, partition: str, detail: str, commit: str = "") -> None:
        super().__init__(table_uri, partition, detail, commit)
        self.table_uri, self.partition, self.detail, self.commit = table_uri, partition, detail, commit

    def __str__(self) -> str:
        where = f"{self.partition}: " if self.partition else ""
        what = f"{self.commit} is not valid JSON ({self.detail})" if self.commit else self.detail
        return (
            f"{where}the Delta log of {self.table_uri} is damaged: {what}; nothing was committed: restore that file "
            "from a copy of the table (if it is the newest commit and there is no copy, removing it returns the "
            "table to the version before), then re-run"
        )


class CommitConflictExhausted(PartitionsError):
    """Concurrent writers kept winning the commit race for one partition."""

    exit_code: ClassVar[int] = 4

    def __init__(self, table_uri: str, partition: str, attempts: int) -> None:
        super().__init__(table_uri, partition, attempts)
        self.table_uri, self.partition, self.attempts = table_uri, partition, attempts

    def __str__(self) -> str:
        return (
            f"{self.partition}: commit to {self.table_uri} lost to concurrent writers {self.attempts} times; "
            "make sure one run owns this partition, then re-run it"
        )


class PartitionMismatch(PartitionsError):
    """Data or files handed to a partition write belong to another partition (or none)."""

    exit_code: ClassVar[int] = 2

    def __init__(self, partition: str, column: str, found: str) -> None:
        super().__init__(partition, column, found)
        self.partition, self.column, self.found = partition, column, found

    def __str__(self) -> str:
        return (
            f"{self.partition}: column {self.column!r} holds {self.found}, not only {self.partition!r}; "
            "filter the data to this partition before writing"
        )
