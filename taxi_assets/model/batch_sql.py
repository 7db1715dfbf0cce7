"""SQL over the batches of a stream: one single-threaded in-memory DuckDB that the streaming aggregates share.

One thread on purpose: the month's writer threads already use the cores, and a batch of 256 Ki rows takes tens of
milliseconds. Relations are registered for one statement and unregistered after it, so nothing holds a batch.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

import duckdb
import pyarrow as pa


class BatchSQL:
    """A ``with`` block owning the connection; :meth:`table` and :meth:`row` run one statement over Arrow data."""

    def __init__(self, owner: str) -> None:
        self._owner = owner  # named in the error when used outside the block
        self._con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> Self:
        self._con = duckdb.connect(config={"threads": "1"})
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _run(self, sql: str, relations: dict[str, pa.Table | pa.RecordBatch]) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError(f"{self._owner} used outside its `with` block")
        for name, data in relations.items():
            self._con.register(name, data)
        return self._con.execute(sql)

    def _release(self, relations: dict[str, pa.Table | pa.RecordBatch]) -> None:
        if self._con is not None:
            for name in relations:
                self._con.unregister(name)

    def table(self, sql: str, **relations: pa.Table | pa.RecordBatch) -> pa.Table:
        """The statement's whole result as an Arrow table."""
        try:
            return self._run(sql, relations).to_arrow_table()
        finally:
            self._release(relations)

    def row(self, sql: str, **relations: pa.Table | pa.RecordBatch) -> tuple[Any, ...] | None:
        """The statement's first row (an aggregate's one row)."""
        try:
            return self._run(sql, relations).fetchone()
        finally:
            self._release(relations)
