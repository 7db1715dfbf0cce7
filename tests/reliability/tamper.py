"""A committed data file altered between a month's write and its verification, as a disk or a person might.

:func:`tampering` wraps ``taxi_assets.assets.trips.write_month`` (what ``run_month`` calls first) so
that, once both commits of the month have landed, one committed ``trips`` data file of the month gets row 1
replaced by a copy of row 0: same file, same row count, same schema, one duplicated trip. The DuckDB checks
that ``run_month`` runs next must catch it (``no_duplicates_introduced``: the committed rows no longer match
the rows the run streamed). Nothing in the package carries a test hook.

Imported by the tests, and by a ``taxi-assets`` process that a test starts with ``python -c`` (``install()``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from taxi_assets.assets import trips


def duplicate_a_row(table_uri: str, month: str) -> str:
    """Overwrite one data file of ``month`` in the table with row 1 replaced by row 0; its path."""
    files = DeltaTable(table_uri).file_uris(partition_filters=[("month", "=", month)])
    path = Path(sorted(files)[0].removeprefix("file://"))
    data = pq.read_table(path)
    assert data.num_rows >= 2, path
    altered = pa.concat_tables([data.slice(0, 1), data.slice(0, 1), data.slice(2)])
    pq.write_table(altered, path)
    return str(path)


def tampering(write_month: Callable[..., Any]) -> tuple[Callable[..., Any], list[str]]:
    """A ``write_month`` that alters one committed file after the month's commits; the list gets its paths."""
    altered: list[str] = []

    def writing_then_tampering(source: Any, cfg: Any, *args: Any, **kwargs: Any) -> Any:
        written = write_month(source, cfg, *args, **kwargs)
        altered.append(duplicate_a_row(cfg.trips_uri, source.partition))
        return written

    return writing_then_tampering, altered


def install() -> None:
    """For a ``taxi-assets`` process started by a test: every month it writes is altered after its commits."""
    trips.write_month, _ = tampering(trips.write_month)  # type: ignore[assignment]
