"""NYC TLC High-Volume FHV trips as a month-partitioned Delta Lake asset, rebuilt only where stale.

The public API, by layer (``taxi_assets.<layer>``; the tree is the architecture, see README.md):

- ``model``: the canonical schema, casts of type drift, quality rules, code versions, the zone lookup (pure).
- ``io``: the source (listing, reading a month in batches), the sink (Delta writes), the DuckDB adapter.
- ``assets``: one month of ``trips``/``quarantine`` (:func:`run_month`, :func:`plan_months`) and ``daily_summary``.
- ``checks``: DuckDB verification of committed versions and the ``checks`` table.
- ``orchestration``: the Prefect flow ``fhvhv-pipeline`` on a Dask cluster (the only layer importing Prefect/Dask).
- ``analysts``: :func:`duckdb_connect` (views over the sink), example queries, the quality report.
- ``cli``: the ``taxi-assets`` command; ``synth``: synthetic months for tests and the demo.

Names below are imported on first use, so ``import taxi_assets`` stays cheap (the CLI's ``sql`` imports only DuckDB).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taxi_assets.analysts.views import duckdb_connect, query
    from taxi_assets.assets.trips import MonthPlan, MonthResult, plan_months, run_month
    from taxi_assets.settings import S3Credentials, Settings

__all__ = [
    "MonthPlan",
    "MonthResult",
    "S3Credentials",
    "Settings",
    "duckdb_connect",
    "plan_months",
    "query",
    "run_month",
]

_HOMES = {
    "duckdb_connect": "taxi_assets.analysts.views",
    "query": "taxi_assets.analysts.views",
    "MonthPlan": "taxi_assets.assets.trips",
    "MonthResult": "taxi_assets.assets.trips",
    "plan_months": "taxi_assets.assets.trips",
    "run_month": "taxi_assets.assets.trips",
    "S3Credentials": "taxi_assets.settings",
    "Settings": "taxi_assets.settings",
}


def __getattr__(name: str) -> Any:
    """The public names, imported from their layer on first use."""
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'taxi_assets' has no attribute {name!r}")
