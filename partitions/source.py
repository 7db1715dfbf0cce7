"""What a source listing found, as plain values: the planner depends on these, not on any filesystem."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from partitions.errors import DuplicatePartitionSource


@dataclass(frozen=True)
class SourceFile:
    """One source file and the fingerprint that changes whenever its content does."""

    partition: str
    uri: str
    size: int
    fingerprint: str
    last_modified: datetime | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file the listing saw and did not use, with the reason in words."""

    uri: str
    reason: str


@dataclass(frozen=True)
class Listing:
    """The outcome of one listing.

    ``files`` holds exactly one file per partition. A partition that two or more files map to is absent from
    ``files`` and present in ``duplicates`` (key -> sorted uris): the listing never guesses, and a duplicate
    fails only its own partition. Turn it into a plan row with
    ``plan(..., source_problems=listing.problems())`` and into an error with ``listing.require(key)``.
    """

    files: Mapping[str, SourceFile]
    skipped: tuple[SkippedFile, ...] = ()
    duplicates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def problems(self) -> dict[str, str]:
        """A reason per partition whose source cannot be used, for ``plan(source_problems=...)``."""
        items = sorted(self.duplicates.items())
        return {key: str(DuplicatePartitionSource(key, uris)).removeprefix(f"{key}: ") for key, uris in items}

    def require(self, key: str) -> SourceFile | None:
        """The file of ``key``; DuplicatePartitionSource when several map to it; None when there is none."""
        if key in self.duplicates:
            raise DuplicatePartitionSource(key, self.duplicates[key])
        return self.files.get(key)
