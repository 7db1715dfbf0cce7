"""What one plan costs as a table ages: read_records + plan against commits and data files.

Run by hand (a few minutes; prints a table, nothing is asserted):

    .venv/bin/python benchmarks/plan_cost.py                 # 120 partitions, ~5,000 files, 100/1,000/5,000 commits
    .venv/bin/python benchmarks/plan_cost.py --commits 100,500 --files-per-partition 10   # a quick look
    .venv/bin/python benchmarks/plan_cost.py --s3            # also over a local S3 server (moto)

The table gets 120 monthly partitions of ``--files-per-partition`` tiny parquet files each (one commit per
partition, through ``commit_files``), then more commits until each milestone: four in five replace one
file of a random partition and carry a success record, one in five is an empty commit carrying a failure
record. The file count stays constant, so only the commit count moves. At each milestone the plan is timed
(median of 5) without any state checkpoint, and with one written ``--recent`` commits before the milestone.
For comparison: loading a ``DeltaTable`` snapshot (replays the add actions from the last Delta checkpoint on)
and ``DeltaTable.history()`` (the delta-rs way to read every commitInfo).
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake.transaction import AddAction, RemoveAction

from partitions import (
    MaterializationRecord,
    SourceFile,
    add_action_for,
    commit_files,
    month_range,
    plan,
    read_state,
    write_state_checkpoint,
)
from partitions.delta_log import STATE_DIR
from partitions.overwrite import POST_COMMIT

COLUMN = "month"
MONTHS = month_range("2015-01", "2024-12")  # 120 partitions
SCHEMA = pa.schema([(COLUMN, pa.string()), ("id", pa.int64()), ("amount", pa.float64())])
CODE = "bench-code-1"


class Builder:
    """Writes tiny data files (copies of one parquet file) and commits them, tracking live files per month."""

    def __init__(self, uri: str, workdir: Path, seed: int = 42) -> None:
        self.uri, self.rng, self.count = uri, random.Random(seed), 0
        template = workdir / "template.parquet"
        pq.write_table(pa.table({"id": list(range(10)), "amount": [i / 3 for i in range(10)]}), template)
        self.body, self.meta = template.read_bytes(), pq.read_metadata(template)
        self.live: dict[str, list[AddAction]] = {}
        self.table: DeltaTable | None = None

    def new_file(self, month: str) -> AddAction:
        self.count += 1
        relative = f"{COLUMN}={month}/part-{self.count:07d}.parquet"
        target = Path(self.uri) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.body)
        return add_action_for(relative, size=len(self.body), metadata=self.meta, partition_values={COLUMN: month})

    def build_partitions(self, files_per_partition: int) -> None:
        """One commit per month through the engine's own ``commit_files``."""
        for run, month in enumerate(MONTHS):
            adds = [self.new_file(month) for _ in range(files_per_partition)]
            rec = record(month, run, rows=10 * len(adds))
            commit_files(self.uri, adds, column=COLUMN, record=rec, schema=SCHEMA)
            self.live[month] = adds
        self.table = DeltaTable(self.uri)

    def add_commits(self, count: int) -> None:
        """``count`` small commits: replace one file of a month (success) or record a failure (no data)."""
        assert self.table is not None
        for _ in range(count):
            month = self.rng.choice(MONTHS)
            run = 1_000_000 + self.count
            if self.rng.random() < 0.2:
                actions: list[AddAction | RemoveAction] = []
                rec = record(month, run, status="failed")
            else:
                old = self.live[month].pop(0)
                add = self.new_file(month)
                self.live[month].append(add)
                removed = RemoveAction(old.path, True, int(time.time() * 1000), old.size, {COLUMN: month})
                actions = [removed, add]
                rec = record(month, run, rows=10 * len(self.live[month]))
            self.table.create_write_transaction(
                actions,
                mode="append",
                schema=SCHEMA,
                partition_by=[COLUMN],
                commit_properties=CommitProperties(custom_metadata=rec.to_commit_metadata()),
                post_commithook_properties=POST_COMMIT,
            )
            self.table.update_incremental()


def record(month: str, run: int, status: str = "success", rows: int = 0) -> MaterializationRecord:
    return MaterializationRecord(
        partition=month,
        status=status,  # type: ignore[arg-type]
        run_id=f"run-{run:07d}",
        code_version=CODE,
        source_uri=f"s3://bucket/src/events_{month}.parquet",
        source_fingerprint=f'etag:"{run:032x}"/size:{rows * 40}',
        rows_source=rows,
        rows_written=rows,
        rows_quarantined=0,
        started_at="2024-01-01T00:00:00+00:00",
        finished_at="2024-01-01T00:01:00+00:00",
        error="" if status == "success" else "source schema drift: column amount is string",
    )


def sources() -> dict[str, SourceFile]:
    return {m: SourceFile(m, f"s3://bucket/src/events_{m}.parquet", 1000, 'etag:"x"/size:1000') for m in MONTHS}


def timed(fn, repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def measure(uri: str, src: dict[str, SourceFile], *, with_state: bool) -> tuple[float, int]:
    """Median plan time and commits read, with the state checkpoints moved aside when ``with_state`` is off."""
    state_dir, hidden = Path(uri) / STATE_DIR, Path(uri) / (STATE_DIR + ".off")
    if not with_state and state_dir.exists():
        state_dir.rename(hidden)
    try:
        return plan_at(uri, src)
    finally:
        if hidden.exists():
            hidden.rename(state_dir)


class S3Mirror:
    """A local S3-compatible server (moto, as in the tests) holding copies of the table's log.

    Only ``_delta_log`` and ``_partitions_state`` are copied: ``read_records`` never touches data files. Two
    prefixes: ``with/`` gets the state checkpoints, ``without/`` never does.
    """

    def __init__(self) -> None:
        import boto3

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        self.options = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket="bench")
        self.sent: dict[str, float] = {}

    def sync(self, table: str) -> None:
        root = Path(table)
        todo = []
        for path in [*root.glob("_delta_log/*"), *root.glob(f"{STATE_DIR}/*")]:
            relative = path.relative_to(root).as_posix()
            if path.is_file() and self.sent.get(relative) != path.stat().st_mtime:
                self.sent[relative] = path.stat().st_mtime
                todo.append(("with/" + relative, path))
                if not relative.startswith(STATE_DIR):
                    todo.append(("without/" + relative, path))
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda kp: self.client.put_object(Bucket="bench", Key=kp[0], Body=kp[1].read_bytes()), todo))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def plan_at(
    uri: str, src: dict[str, SourceFile], options: dict[str, str] | None = None, repeat: int = 5
) -> tuple[float, int]:
    """Median seconds of ``repeat`` plans (read_state + plan) and how many commits one plan read."""
    read = [0]

    def once() -> None:
        state = read_state(uri, storage_options=options)
        plan(src, state.histories, code_version=CODE)
        read[0] = state.commits_read

    return timed(once, repeat), read[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", default="100,1000,5000", help="milestones: commits after the initial build")
    parser.add_argument("--files-per-partition", type=int, default=42, help="42 x 120 = 5,040 data files")
    parser.add_argument("--recent", type=int, default=10, help="commits between state checkpoint and plan")
    parser.add_argument("--s3", action="store_true", help="also time plans over a local S3 server (moto)")
    parser.add_argument("--keep", action="store_true", help="keep the table directory")
    args = parser.parse_args(argv)
    milestones = sorted(int(x) for x in args.commits.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="plan-cost-"))
    uri = str(workdir / "events")
    builder = Builder(uri, workdir)
    src = sources()
    mirror = S3Mirror() if args.s3 else None

    t0 = time.perf_counter()
    builder.build_partitions(args.files_per_partition)
    assert builder.table is not None
    print(f"built {len(MONTHS)} partitions x {args.files_per_partition} files in {time.perf_counter() - t0:.1f} s")

    rows: list[dict[str, float | int]] = []
    done = 0
    try:
        for milestone in milestones:
            t1 = time.perf_counter()
            builder.add_commits(milestone - done - args.recent)
            state_version = write_state_checkpoint(uri)
            builder.add_commits(args.recent)
            done = milestone
            print(f"  {milestone} commits: built in {time.perf_counter() - t1:.1f} s, state at v{state_version}")
            row: dict[str, float | int] = {"commits": milestone, "versions": builder.table.version() + 1}
            row["data files"] = len(builder.table.file_uris())
            row["local, no state"], row["read"] = measure(uri, src, with_state=False)
            row["local, state"], row["read "] = measure(uri, src, with_state=True)
            if mirror is not None:
                mirror.sync(uri)
                row["s3, no state"], _ = plan_at("s3://bench/without", src, mirror.options, repeat=3)
                row["s3, state"], _ = plan_at("s3://bench/with", src, mirror.options)
            row["snapshot"] = timed(lambda: DeltaTable(uri).version(), repeat=3)
            row["history()"] = timed(lambda: DeltaTable(uri).history(), repeat=3)
            rows.append(row)
    finally:
        if mirror is not None:
            mirror.close()

    print()
    columns = list(rows[0])
    print("  ".join(f"{c:>15}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]:>13.3f} s" if isinstance(row[c], float) else f"{row[c]:>15}" for c in columns))
    print()
    first = rows[0]
    timings = [c for c in columns if isinstance(first[c], float)]
    for row in rows[1:]:
        ratios = ", ".join(f"{c} x{row[c] / first[c]:.2f}" for c in timings)
        print(f"x{row['commits'] / first['commits']:.0f} commits: {ratios}")
    print(f"\ntable kept at {uri}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
