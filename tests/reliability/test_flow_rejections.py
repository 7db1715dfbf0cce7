"""A whole run (the Prefect flow on a real Dask cluster) with an unusable month: that month fails, the others go on.

``tests/taxi_assets/test_flows.py`` covers a month whose *file* is rejected. This covers a month whose *listing*
is rejected: two source files for one month (a re-issue in a sub-folder).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_cases import MONTH, OTHER, local_settings, published_month, status, write_file

from taxi_assets.errors import PartitionsFailed
from taxi_assets.orchestration.flows import fhvhv_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_run_with_two_files_for_one_month_fails_that_month_and_completes_the_others(tmp_path, dask_address):
    cfg = local_settings(tmp_path)
    write_file(cfg.source, MONTH, published_month(MONTH, 200, seed=7))
    write_file(Path(cfg.source) / "reissued", MONTH, published_month(MONTH, 210, seed=9))
    write_file(cfg.source, OTHER, published_month(OTHER, 150, seed=8))

    with pytest.raises(PartitionsFailed) as info:
        fhvhv_pipeline(source=cfg.source, sink=cfg.sink, cluster=dask_address)

    assert list(info.value.failures) == [MONTH]
    assert "2 source files map to this partition" in info.value.failures[MONTH]
    rows = status(cfg)
    assert (rows[MONTH]["state"], rows[OTHER]["state"]) == ("failed", "fresh")
