"""A small warehouse for the analysts' tests: synthetic source months through the real month step."""

from __future__ import annotations

from taxi_assets.assets.trips import MonthResult, new_run_id, plan_months, run_month
from taxi_assets.settings import Settings
from taxi_assets.synth import write_month_file


def build_warehouse(cfg: Settings, months: dict[str, tuple[int, str]], *, seed: int = 1) -> dict[str, MonthResult]:
    """Write the source months, then run each through ``run_month`` (which records its checks and summary)."""
    for month, (rows, anomalies) in months.items():
        write_month_file(
            cfg.source, month, rows, seed=seed, anomalies=anomalies, storage_options=cfg.storage_options(cfg.source)
        )
    plan = plan_months(cfg)
    results = {}
    for month in months:
        results[month] = run_month(plan.listing.files[month], cfg, run_id=new_run_id(), code_version=plan.code_version)
    return results
