"""What one plan costs as a table ages: read_records + plan against commits and data files.

Run by hand (a few minutes; prints a table, nothing is asserted):

    .venv/bin/python benchmarks/plan_cost.py                 # 120 partitions, ~5,000 files, 100/1,000/5,000 commits
    .venv/bin/python benchmarks/plan_cost.py --commits 100,500 --files-per-partition 10   # a quick look

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
import statistics
import tempfile
import time
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


def plan_once(uri: str, src: dict[str, SourceFile]) -> int:
    state = read_state(uri)
    plan(src, state.histories, code_version=CODE)
    return state.commits_read


def measure(uri: str, src: dict[str, SourceFile], *, with_state: bool) -> tuple[float, int]:
    state_dir, hidden = Path(uri) / STATE_DIR, Path(uri) / (STATE_DIR + ".off")
    if not with_state and state_dir.exists():
        state_dir.rename(hidden)
    try:
        return timed(lambda: plan_once(uri, src)), plan_once(uri, src)
    finally:
        if hidden.exists():
            hidden.rename(state_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", default="100,1000,5000", help="milestones: commits after the initial build")
    parser.add_argument("--files-per-partition", type=int, default=42, help="42 x 120 = 5,040 data files")
    parser.add_argument("--recent", type=int, default=10, help="commits between state checkpoint and plan")
    parser.add_argument("--keep", action="store_true", help="keep the table directory")
    args = parser.parse_args(argv)
    milestones = sorted(int(x) for x in args.commits.split(","))
    workdir = Path(tempfile.mkdtemp(prefix="plan-cost-"))
    uri = str(workdir / "events")
    builder = Builder(uri, workdir)
    src = sources()

    t0 = time.perf_counter()
    builder.build_partitions(args.files_per_partition)
    table = builder.table
    print(f"built {len(MONTHS)} partitions x {args.files_per_partition} files in {time.perf_counter() - t0:.1f} s")

    rows, done = [], 0
    for milestone in milestones:
        t1 = time.perf_counter()
        builder.add_commits(milestone - done - args.recent)
        state_version = write_state_checkpoint(uri)
        builder.add_commits(args.recent)
        done = milestone
        build_s = time.perf_counter() - t1
        files = len(table.file_uris())
        without, read_without = measure(uri, src, with_state=False)
        with_state, read_with = measure(uri, src, with_state=True)
        snapshot = timed(lambda: DeltaTable(uri).version(), repeat=3)
        history = timed(lambda: DeltaTable(uri).history(), repeat=3)
        rows.append(
            (milestone, table.version() + 1, files, without, read_without, with_state, read_with, snapshot, history)
        )
        print(
            f"  {milestone} commits: built in {build_s:.1f} s, state checkpoint at version {state_version}",
            flush=True,
        )

    print()
    header = ("commits", "versions", "data files", "plan, no state", "read", "plan, state", "read")
    print("{:>8} {:>9} {:>11} {:>15} {:>6} {:>12} {:>6} {:>9} {:>10}".format(*header, "snapshot", "history()"))
    for milestone, versions, files, without, rw, with_state, rs, snapshot, history in rows:
        print(
            f"{milestone:>8} {versions:>9} {files:>11} {without:>13.3f} s {rw:>6} {with_state:>10.3f} s {rs:>6} "
            f"{snapshot:>7.3f} s {history:>8.3f} s"
        )
    first = rows[0]
    print()
    for row in rows[1:]:
        print(
            f"x{row[0] / first[0]:.0f} commits: no state x{row[3] / first[3]:.1f}, "
            f"with state x{row[5] / first[5]:.2f}, snapshot load x{row[7] / first[7]:.1f}, "
            f"history() x{row[8] / first[8]:.1f}"
        )
    print(f"\ntable: {uri}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
