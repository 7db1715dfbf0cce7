"""Monthly partition keys: parse, order, ranges, and the file-name pattern that maps a source file to its key.

A key is the text ``YYYY-MM``. Keys sort as strings in time order, so plain ``sorted()`` is the calendar
order and no other representation leaks into table paths, commit metadata or plan rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from partitions.errors import InvalidPartitionKey

_MONTH = re.compile(r"(?P<year>\d{4})-(?P<month>\d{2})")
_RANGE = ".."


def parse_month(text: str) -> str:
    """Return ``text`` unchanged when it is a real month ``YYYY-MM``; raise InvalidPartitionKey otherwise.

    >>> parse_month("2019-02")
    '2019-02'
    """
    match = _MONTH.fullmatch(text) if isinstance(text, str) else None
    if match is None or not 1 <= int(match["month"]) <= 12 or int(match["year"]) < 1:
        raise InvalidPartitionKey(str(text))
    return text


def _month_index(key: str) -> int:
    return int(key[:4]) * 12 + int(key[5:7]) - 1


def _month_of_index(index: int) -> str:
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(first: str, last: str) -> list[str]:
    """Every month from ``first`` to ``last``, both included; raise InvalidPartitionKey when reversed.

    >>> month_range("2019-11", "2020-02")
    ['2019-11', '2019-12', '2020-01', '2020-02']
    """
    lo, hi = _month_index(parse_month(first)), _month_index(parse_month(last))
    if lo > hi:
        raise InvalidPartitionKey(f"{first}{_RANGE}{last}", "a range FIRST..LAST with FIRST <= LAST")
    return [_month_of_index(i) for i in range(lo, hi + 1)]


def parse_selection(items: str | Iterable[str]) -> list[str]:
    """Sorted unique keys from ``"2019-02,2019-04..2019-06"`` or a list of such items.

    >>> parse_selection(["2019-05..2019-06", "2019-02,2019-05"])
    ['2019-02', '2019-05', '2019-06']
    """
    parts = [items] if isinstance(items, str) else list(items)
    keys: set[str] = set()
    for part in parts:
        for item in (piece.strip() for piece in part.split(",")):
            if not item:
                continue
            if _RANGE in item:
                first, _, last = item.partition(_RANGE)
                keys.update(month_range(first.strip(), last.strip()))
            else:
                keys.add(parse_month(item))
    return sorted(keys)


def month_bounds(key: str) -> tuple[datetime, datetime]:
    """The half-open interval ``[first instant of the month, first instant of the next month)``, naive.

    >>> month_bounds("2019-12")
    (datetime.datetime(2019, 12, 1, 0, 0), datetime.datetime(2020, 1, 1, 0, 0))
    """
    index = _month_index(parse_month(key))
    nxt = index + 1
    return datetime(index // 12, index % 12 + 1, 1), datetime(nxt // 12, nxt % 12 + 1, 1)


@dataclass(frozen=True)
class MonthlyPartitions:
    """A monthly partition definition: which file names belong to the asset and which month each one is.

    ``pattern`` is a regular expression matched against the whole base name of a file. It names the month
    either with one group ``key`` (``YYYY-MM``) or with two groups ``year`` and ``month`` (for names like
    ``sales_201902.csv``). ``start``/``end`` bound the months the asset covers, both included.
    """

    pattern: str
    start: str | None = None
    end: str | None = None
    ignore_case: bool = field(default=True, kw_only=True)

    def __post_init__(self) -> None:
        groups = set(self._regex.groupindex)
        if "key" not in groups and not {"year", "month"} <= groups:
            raise ValueError(f"pattern {self.pattern!r} needs a group (?P<key>...) or groups year and month")
        for bound in (self.start, self.end):
            if bound is not None:
                parse_month(bound)
        if self.start is not None and self.end is not None and self.start > self.end:
            raise InvalidPartitionKey(f"{self.start}..{self.end}", "start <= end")

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)

    def raw_key_for(self, name: str) -> str | None:
        """The ``YYYY-MM`` text a matching name carries, not yet checked as a real month; None if no match."""
        match = self._regex.fullmatch(name.rsplit("/", 1)[-1])
        if match is None:
            return None
        groups = match.groupdict()
        if groups.get("key") is not None:
            return str(groups["key"])
        return f"{groups['year']}-{groups['month']}"

    def key_for(self, name: str) -> str | None:
        """The key of a file's base name; None when the name does not match or the month is impossible."""
        raw = self.raw_key_for(name)
        if raw is None:
            return None
        try:
            return parse_month(raw)
        except InvalidPartitionKey:
            return None

    def contains(self, key: str) -> bool:
        """True when ``key`` lies within ``start``..``end`` (an open bound admits everything on that side)."""
        return (self.start is None or key >= self.start) and (self.end is None or key <= self.end)
