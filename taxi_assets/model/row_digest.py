"""An order-independent digest of a month's rows, taken as they stream and again on the committed table.

Why: proving that the written month holds exactly the rows the run kept used to cost two full reads, a
``count(DISTINCT hash(row))`` over the month (a hash table growing with the month) and a second read of the
whole source file. A digest is taken on the batches the writer already holds, and the check compares it
with one aggregate over the committed month: no second read of the source, no hash table.

The digest of a set of rows is ``(rows, sum of hash(c1, ..., cN))`` over the :data:`IDENTITY` columns (named
in schema order, so both sides evaluate the same expression). The sum is exact (a Python int; DuckDB sums the
64-bit hashes into a 128-bit integer) and does not depend on the order of the rows, batches or files. Equal
digests mean the two sides are, as multisets, the same trips up to a 64-bit hash collision: a duplicated,
lost or swapped row changes the sum.

Why the identity columns and not all 25: between the digest and the commit, rows only move whole (the
writer slices, filters and concatenates record batches; the casts ran before), so what can go wrong there is a
row too many, too few or another row in its place, and the columns that tell one trip from another (who, when,
where, how far, how much) see all of that. Hashing the other 17 columns as well would also catch a value the
Parquet encoder or the store altered inside a row, at 3.2 s of CPU per 16 M rows (1.9 s while streaming, on the
reading thread, and 1.3 s more in the check's scan: measured in ``docs/performance.md``): 18 % of a month's CPU.

DuckDB hashes a dictionary-encoded string and the plain string written to Parquet alike, so the streamed
(dictionary) batches and the committed (plain) files agree. The hash is DuckDB's, so the digest names the
DuckDB version and the columns that took it, and is only compared with one taken the same way
(:meth:`RowsDigest.comparable`). DuckDB hashes ``-0.0`` as ``0.0`` and every NaN alike, so a row differing
only there is not seen: no step of ours can make that change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import duckdb
import pyarrow as pa

from taxi_assets.model.batch_sql import BatchSQL

# What tells one trip from another: who, when, where, how far, how much. Timestamps are whole seconds in the
# published files and a busy second holds several trips; with the zones, the miles and two money columns, two
# distinct trips that agree on all eight are not expected in a month. All required: never null in ``trips``.
IDENTITY: Final = (
    "hvfhs_license_num",
    "pickup_datetime",
    "dropoff_datetime",
    "PULocationID",
    "DOLocationID",
    "trip_miles",
    "base_passenger_fare",
    "driver_pay",
)
METHOD: Final = (
    f"duckdb-{duckdb.__version__}-hash-sum-identity-{hashlib.sha256(','.join(IDENTITY).encode()).hexdigest()[:8]}"
)
_KEEP: Final = "__keep"


def row_hash_sql(columns: Sequence[str] = IDENTITY) -> str:
    """``hash("c1", ..., "cN")`` over ``columns``, in schema order: the one expression both sides use."""
    return "hash(" + ", ".join(f'"{c}"' for c in columns) + ")"


@dataclass(frozen=True, slots=True)
class RowsDigest:
    """How many rows, and the exact sum of their identity hashes, as taken by :data:`METHOD`."""

    rows: int
    hash_sum: int
    method: str = METHOD

    def __add__(self, other: RowsDigest) -> RowsDigest:
        if other.method != self.method:
            raise ValueError(f"cannot add digests of {self.method!r} and {other.method!r}")
        return RowsDigest(self.rows + other.rows, self.hash_sum + other.hash_sum, self.method)

    def comparable(self, other: RowsDigest) -> bool:
        """Taken the same way: only then does a difference mean different rows."""
        return self.method == other.method

    @property
    def short(self) -> str:
        """A few hex digits for messages: enough to tell two digests apart by eye."""
        return f"{self.hash_sum % 16**12:012x}"

    def to_text(self) -> str:
        """``method:rows:hash_sum``: the form kept in commit records and in ``MonthResult`` (JSON-safe)."""
        return f"{self.method}:{self.rows}:{self.hash_sum}"

    @classmethod
    def from_text(cls, text: str) -> RowsDigest | None:
        """The digest :meth:`to_text` wrote; None for an empty or unreadable text (nothing to compare)."""
        method, _, numbers = text.partition(":")
        rows, _, total = numbers.partition(":")
        if not method or not rows.isdigit() or not total.isdigit():
            return None
        return cls(int(rows), int(total), method)


def digest_sql(relation: str, *, where: str = "") -> str:
    """``SELECT count(*), sum(row hash) FROM relation [WHERE ...]``: what both sides run."""
    return f"SELECT count(*), sum({row_hash_sql()}) FROM {relation}" + (f" WHERE {where}" if where else "")


class StreamDigest(BatchSQL):
    """Digest of the clean rows of a stream of batches (:class:`BatchSQL`: one single-threaded DuckDB)."""

    def __init__(self) -> None:
        super().__init__("StreamDigest")
        self._rows = 0
        self._sum = 0
        self._all = digest_sql("batch")
        self._kept = digest_sql("batch", where=_KEEP)

    def add(self, batch: pa.RecordBatch, keep: pa.BooleanArray | None = None) -> None:
        """Count the rows of ``batch`` where ``keep`` is true (every row when ``keep`` is None)."""
        data = batch if keep is None else batch.append_column(_KEEP, keep)  # zero-copy: the same buffers
        row = self.row(self._all if keep is None else self._kept, batch=data)
        if row is not None:
            self._rows += int(row[0] or 0)
            self._sum += int(row[1] or 0)

    def result(self) -> RowsDigest:
        return RowsDigest(self._rows, self._sum)
