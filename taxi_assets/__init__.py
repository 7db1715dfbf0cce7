"""NYC TLC High-Volume FHV trips as a month-partitioned Delta Lake asset."""

from __future__ import annotations

from typing import Any

__all__ = ["duckdb_connect"]


def __getattr__(name: str) -> Any:
    """``taxi_assets.duckdb_connect``, imported on first use: `taxi-assets run` imports this package before the
    data stack (DuckDB, Arrow) so that its Prefect API server starts first (``taxi_assets.entry``)."""
    if name == "duckdb_connect":
        from taxi_assets.analytics import duckdb_connect

        return duckdb_connect
    raise AttributeError(f"module 'taxi_assets' has no attribute {name!r}")
