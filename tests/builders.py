"""Builders for test data: synthetic source months and settings pointing at them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable

from taxi_assets.settings import S3Credentials, Settings
from taxi_assets.synth import write_month_file


def write_months(source: str, months: list[str], rows: int = 400, *, seed: int = 1, storage_options=None) -> None:
    for month in months:
        write_month_file(source, month, rows, seed=seed, storage_options=storage_options)


def local_settings(tmp_path: Path, cluster: str = "local") -> Settings:
    return Settings.resolve(source=str(tmp_path / "source"), sink=str(tmp_path / "warehouse"), cluster=cluster, env={})


def s3_settings(server, bucket: str) -> Settings:
    creds = S3Credentials(
        key_id=server.key_id, secret=server.secret, endpoint_url=server.endpoint, region=server.region
    )
    return Settings.resolve(source=f"s3://{bucket}/source", sink=f"s3://{bucket}/warehouse", env={}, s3=creds)


def month_rows(cfg: Settings, table: str, month: str) -> int:
    uri = f"{cfg.sink}/{table}"
    dt = DeltaTable(uri, storage_options=cfg.storage_options(uri))
    return dt.to_pyarrow_dataset().count_rows(filter=_month_filter(month))


def _month_filter(month: str):
    return ds.field("month") == month


def source_rows(path: str) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def table_version(cfg: Settings, table: str = "trips") -> int:
    uri = f"{cfg.sink}/{table}"
    return DeltaTable(uri, storage_options=cfg.storage_options(uri)).version()


def network_cases() -> ModuleType:
    """The partitions tests' misbehaving network peers (``tests/partitions/network_cases.py``: a module beside
    those tests, not a package), for tests elsewhere that need its scripted HTTP file server."""
    path = Path(__file__).parent / "partitions" / "network_cases.py"
    spec = importlib.util.spec_from_file_location("network_cases", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("network_cases", module)
    spec.loader.exec_module(module)
    return module
