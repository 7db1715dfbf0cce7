"""Builders and probes shared by the reliability tests: published months, snapshots of a month, the Delta log.

A *snapshot* of a month is everything a reader could see of it: the data files the current version names for
the month in both tables, their row counts, and every parquet file on disk. Comparing snapshots before and
after a failure is how the tests show that nothing was written, lost or mixed.
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import DeltaTable

from partitions._storage import fsspec_for
from partitions.delta_log import LOG_DIR
from taxi_assets.assets.trips import MonthResult, new_run_id, plan_months, run_month
from taxi_assets.cli.main import main as cli_main
from taxi_assets.model.schema import PARTITION_COLUMN
from taxi_assets.settings import S3Credentials, Settings
from taxi_assets.synth import generate_month
from taxi_assets.synth.writer import file_name

MONTH = "2022-06"  # string / int64 / timestamp[us] era, with airport_fee and flags carrying values
OTHER = "2022-07"
ROWS = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def published_month(month: str = MONTH, rows: int = ROWS, *, seed: int = 7, anomalies: str = "stress") -> pa.Table:
    """A month in its published schema; "stress" anomalies so that both tables get rows."""
    table, _ = generate_month(month, rows, seed=seed, anomalies=anomalies)  # type: ignore[arg-type]
    return table


def write_file(directory: str | Path, month: str, table: pa.Table, **options: Any) -> Path:
    """``table`` as the TLC file of ``month`` under ``directory`` (parquet options passed through)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / file_name(month)
    options.setdefault("row_group_size", max(table.num_rows, 1))
    pq.write_table(table, path, **options)
    return path


def put_source(cfg: Settings, month: str, table: pa.Table) -> str:
    """``table`` as the TLC file of ``month`` in ``cfg.source``, local or ``s3://``; its URI."""
    fs, root = fsspec_for(cfg.source, cfg.storage_options(cfg.source))
    fs.makedirs(root, exist_ok=True)
    with fs.open(f"{root}/{file_name(month)}", "wb") as handle:
        pq.write_table(table, handle, row_group_size=max(table.num_rows, 1))
    return f"{cfg.source}/{file_name(month)}"


def local_settings(root: Path) -> Settings:
    return Settings.resolve(source=str(root / "source"), sink=str(root / "warehouse"), env={})


def s3_settings(server: Any, bucket: str, *, endpoint: str | None = None) -> Settings:
    creds = S3Credentials(
        key_id=server.key_id,
        secret=server.secret,
        endpoint_url=endpoint or server.endpoint,
        region=server.region,
    )
    return Settings.resolve(source=f"s3://{bucket}/source", sink=f"s3://{bucket}/warehouse", env={}, s3=creds)


def wrong_key_settings(bucket: str, endpoint: str, secret: str) -> Settings:
    """Settings for ``bucket`` whose credentials the store refuses (a made-up key id and ``secret``)."""
    creds = S3Credentials(key_id="AKIAWRONGKEY", secret=secret, endpoint_url=endpoint, region="us-east-1")
    return Settings.resolve(source=f"s3://{bucket}/source", sink=f"s3://{bucket}/warehouse", env={}, s3=creds)


def materialize(cfg: Settings, month: str, *, run_id: str | None = None) -> MonthResult:
    """What ``taxi-assets materialize --partition month`` runs: plan the month, then ``run_month``."""
    plan = plan_months(cfg, partitions=[month])
    return run_month(plan.listing.files[month], cfg, run_id=run_id or new_run_id(), code_version=plan.code_version)


def status(cfg: Settings) -> dict[str, dict[str, Any]]:
    """``taxi-assets status --json``, run through the CLI's own entry point, by month."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli_main(["status", "--json", "--source", cfg.source, "--sink", cfg.sink])
    assert code == 0
    return {row["partition"]: row for row in json.loads(out.getvalue())}


def plan_states(cfg: Settings) -> dict[str, tuple[str, str]]:
    return {r.partition: (str(r.state), r.reason) for r in plan_months(cfg).rows}


def _table(cfg: Settings, name: str) -> DeltaTable | None:
    uri = f"{cfg.sink}/{name}"
    options = cfg.storage_options(uri)
    if not DeltaTable.is_deltatable(uri, storage_options=options):
        return None
    return DeltaTable(uri, storage_options=options)


def month_rows(cfg: Settings, name: str, month: str) -> int:
    table = _table(cfg, name)
    if table is None:
        return 0
    return table.to_pyarrow_dataset().count_rows(filter=ds.field(PARTITION_COLUMN) == month)


def month_table(cfg: Settings, name: str, month: str) -> pa.Table:
    table = _table(cfg, name)
    assert table is not None, f"{cfg.sink}/{name} is not a Delta table"
    return table.to_pyarrow_dataset().to_table(filter=ds.field(PARTITION_COLUMN) == month)


def month_files(cfg: Settings, name: str, month: str) -> tuple[str, ...]:
    table = _table(cfg, name)
    if table is None:
        return ()
    adds = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    return tuple(sorted(a["path"] for a in adds if a.get(f"partition.{PARTITION_COLUMN}") == month))


def version(cfg: Settings, name: str) -> int | None:
    table = _table(cfg, name)
    return None if table is None else table.version()


def stored_files(cfg: Settings, name: str) -> set[str]:
    """Every parquet data file under the table, referenced or not (relative to the table root)."""
    uri = f"{cfg.sink}/{name}"
    fs, root = fsspec_for(uri, cfg.storage_options(uri))
    if not fs.exists(root):
        return set()
    return {p[len(root) + 1 :] for p in fs.find(root) if p.endswith(".parquet") and f"/{LOG_DIR}/" not in p}


def referenced_files(cfg: Settings, name: str) -> set[str]:
    table = _table(cfg, name)
    if table is None:
        return set()
    return {a["path"] for a in pa.table(table.get_add_actions(flatten=True)).to_pylist()}


@dataclass(frozen=True)
class Snapshot:
    """What a reader can see of one month, plus what lies on disk."""

    trips_files: tuple[str, ...]
    quarantine_files: tuple[str, ...]
    trips_rows: int
    quarantine_rows: int
    quarantine_version: int | None
    stored: frozenset[str]


def snapshot(cfg: Settings, month: str) -> Snapshot:
    return Snapshot(
        trips_files=month_files(cfg, "trips", month),
        quarantine_files=month_files(cfg, "quarantine", month),
        trips_rows=month_rows(cfg, "trips", month),
        quarantine_rows=month_rows(cfg, "quarantine", month),
        quarantine_version=version(cfg, "quarantine"),
        stored=frozenset(stored_files(cfg, "trips") | stored_files(cfg, "quarantine")),
    )


@dataclass(frozen=True)
class Commit:
    version: int
    info: dict[str, Any]
    actions: tuple[str, ...]  # "add", "remove", "txn", ... in file order

    @property
    def partition(self) -> str | None:
        return self.info.get("partitions.partition")

    @property
    def status(self) -> str | None:
        return self.info.get("partitions.status")

    @property
    def run_id(self) -> str | None:
        return self.info.get("partitions.run_id")

    @property
    def txns(self) -> list[dict[str, Any]]:
        return list(self.info.get("_txns", []))


def log(cfg: Settings, name: str) -> list[Commit]:
    """Every commit of the table's ``_delta_log``, read as files (local or S3), in version order."""
    uri = f"{cfg.sink}/{name}"
    fs, root = fsspec_for(uri, cfg.storage_options(uri))
    commits = []
    for path in sorted(fs.glob(f"{root}/{LOG_DIR}/*.json")):
        stem = path.rsplit("/", 1)[-1].removesuffix(".json")
        if not stem.isdigit():
            continue
        info: dict[str, Any] = {}
        actions: list[str] = []
        txns: list[dict[str, Any]] = []
        for line in fs.cat_file(path).decode().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            (kind, body), *_ = entry.items()
            actions.append(kind)
            if kind == "commitInfo":
                info = dict(body)
            elif kind == "txn":
                txns.append(body)
        info["_txns"] = txns
        commits.append(Commit(int(stem), info, tuple(actions)))
    return commits


def data_actions(commit: Commit) -> list[str]:
    return [a for a in commit.actions if a in ("add", "remove")]


def rows_counter(table: pa.Table, drop: Iterable[str] = (PARTITION_COLUMN,)) -> Counter[tuple[Any, ...]]:
    """The rows of ``table`` as a multiset (order-free comparison; list cells become tuples)."""
    kept = table.drop_columns([c for c in drop if c in table.column_names])
    return Counter(tuple(tuple(v) if isinstance(v, list) else v for v in row.values()) for row in kept.to_pylist())


def all_bytes(cfg: Settings) -> dict[str, bytes]:
    """Every object under the sink (logs, state checkpoints, data files, checks), by path."""
    fs, root = fsspec_for(cfg.sink, cfg.storage_options(cfg.sink))
    return {p: fs.cat_file(p) for p in fs.find(root)}
