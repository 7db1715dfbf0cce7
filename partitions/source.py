"""What a source listing found, as plain values: the planner depends on these, not on any filesystem."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from partitions.errors import DuplicatePartitionSource, PartitionUnavailable


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
    """A file the listing saw and did not use, with the reason in words.

    ``group`` is the reason shared by every file skipped for the same cause, worded to follow "N files" (e.g.
    ``not matching the pattern '...'``); :meth:`Listing.skipped_summary` counts files per group. Empty: the
    ``reason`` is the group.
    """

    uri: str
    reason: str
    group: str = ""


@dataclass(frozen=True)
class Listing:
    """The outcome of one listing.

    ``files`` holds exactly one file per partition. A partition that two or more files map to is absent from
    ``files`` and present in ``duplicates`` (key -> sorted uris): the listing never guesses, and a duplicate
    fails only its own partition. Turn it into a plan row with
    ``plan(..., source_problems=listing.problems())`` and into an error with ``listing.require(key)``.

    ``unavailable`` holds the partitions the source did not answer for after the lister's retries (key ->
    reason): nothing is known about them, so they are in neither ``files`` nor ``skipped``. Pass it as
    ``plan(..., unavailable=listing.unavailable)``; ``listing.require(key)`` raises ``PartitionUnavailable``.
    """

    files: Mapping[str, SourceFile]
    skipped: tuple[SkippedFile, ...] = ()
    duplicates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    unavailable: Mapping[str, str] = field(default_factory=dict)

    def problems(self) -> dict[str, str]:
        """A reason per partition whose source cannot be used, for ``plan(source_problems=...)``."""
        items = sorted(self.duplicates.items())
        return {key: str(DuplicatePartitionSource(key, uris)).removeprefix(f"{key}: ") for key, uris in items}

    def require(self, key: str) -> SourceFile | None:
        """The file of ``key``; None when there is none.

        Raises:
            DuplicatePartitionSource: several files map to ``key``.
            PartitionUnavailable: the source did not answer for ``key`` (transient).
        """
        if key in self.duplicates:
            raise DuplicatePartitionSource(key, self.duplicates[key])
        if key in self.unavailable:
            raise PartitionUnavailable(key, self.unavailable[key])
        return self.files.get(key)

    def skipped_summary(self, *, limit: int = 3) -> str:
        """The skipped files in one line: a count and the first ``limit`` names per cause; "" when none.

        e.g. ``62 files not matching the pattern '^x_(?P<key>\\d{4}-\\d{2})\\.csv$': a.csv, b.csv, c.csv (+59
        more); 1 file naming no real month: x_2019-13.csv``. Print it instead of one line per file: a prefix
        shared with other datasets can hold hundreds.
        """
        groups: dict[str, list[str]] = {}
        for skipped in self.skipped:
            groups.setdefault(skipped.group or skipped.reason, []).append(skipped.uri.rstrip("/").rsplit("/", 1)[-1])
        parts = []
        for group, names in sorted(groups.items(), key=lambda item: -len(item[1])):  # stable: ties keep order
            shown = ", ".join(names[:limit]) + (f" (+{len(names) - limit} more)" if len(names) > limit else "")
            parts.append(f"{len(names)} {'file' if len(names) == 1 else 'files'} {group}: {shown}")
        return "; ".join(parts)
