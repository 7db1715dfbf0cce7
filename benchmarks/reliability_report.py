"""The reliability figures of docs/reliability.md: runs ``tests/reliability`` and tabulates what each scenario did.

    .venv/bin/python benchmarks/reliability_report.py            # every scenario (~4-5 min on 2 busy cores)
    .venv/bin/python benchmarks/reliability_report.py --quick    # without the tests marked slow (~1-2 min)

The scenarios are the tests themselves: each records what it tried and what came of it through pytest's
``record_property`` (``tests/reliability/conftest.py``, fixture ``figure``), and this script collects those
records from an in-process ``pytest.main`` run. It adds one measurement no test asserts: how many single
corruptions of a column chunk the month reader notices, in files written with and without page checksums.
It prints Markdown and exits non-zero if a test failed, a row was lost or a secret leaked.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reliability"))

from reliability_cases import MONTH, published_month, rows_counter  # noqa: E402

from partitions.source import SourceFile  # noqa: E402
from taxi_assets.errors import SourceRejected  # noqa: E402
from taxi_assets.io.reader import MonthReader  # noqa: E402


class Collector:
    """A pytest plugin keeping each test's outcome and its ``reliability.*`` properties."""

    def __init__(self) -> None:
        self.figures: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.outcomes: Counter[str] = Counter()
        self.failed: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            outcome = "xfailed" if hasattr(report, "wasxfail") else report.outcome
            self.outcomes[outcome] += 1
            if outcome == "failed":
                self.failed.append(report.nodeid)
        if report.when == "call" and report.passed:
            for name, value in report.user_properties:
                if name.startswith("reliability."):
                    self.figures[name.removeprefix("reliability.")].append(json.loads(str(value)))


def run_scenarios(quick: bool) -> tuple[Collector, float]:
    collector = Collector()
    args = [str(ROOT / "tests" / "reliability"), "-q", "-p", "no:cacheprovider", "--no-header", "-rfx"]
    if quick:
        args += ["-m", "not slow"]
    t0 = time.perf_counter()
    pytest.main(args, plugins=[collector])
    return collector, time.perf_counter() - t0


def read_month(path: Path) -> Counter[tuple[Any, ...]]:
    """Every row the reader yields (clean or quarantined, as cast), as a multiset."""
    source = SourceFile(MONTH, str(path), path.stat().st_size, "x")
    rows: Counter[tuple[Any, ...]] = Counter()
    with MonthReader(source) as reader:
        for part in reader.batches():
            rows += rows_counter(pa.Table.from_batches([part.clean]))
            rows += rows_counter(pa.Table.from_batches([part.quarantine]).select(part.clean.schema.names))
    return rows


def corrupt_pages(flips_per_chunk: int = 3) -> dict[str, Counter[str]]:
    """Flip 8 bytes inside each column chunk of the last row group; what does the reader make of it?"""
    out: dict[str, Counter[str]] = {}
    table = published_month(MONTH, 3_000, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        for checksums in (False, True):
            path = Path(tmp) / "fhvhv_tripdata_good.parquet"
            pq.write_table(table, path, row_group_size=1_000, compression="snappy", write_page_checksum=checksums)
            expected = read_month(path)
            meta = pq.ParquetFile(path).metadata
            last = meta.row_group(meta.num_row_groups - 1)
            raw = path.read_bytes()
            outcomes: Counter[str] = Counter()
            for column in range(last.num_columns):
                chunk = last.column(column)
                start = chunk.dictionary_page_offset or chunk.data_page_offset
                for flip in range(flips_per_chunk):
                    spoiled = bytearray(raw)
                    middle = start + chunk.total_compressed_size // 2 + 3 * flip
                    for i in range(8):
                        spoiled[middle + i] ^= 0xFF
                    bad = Path(tmp) / f"fhvhv_tripdata_bad_{column}_{flip}.parquet"
                    bad.write_bytes(bytes(spoiled))
                    try:
                        got = read_month(bad)
                        outcomes["read: values altered" if got != expected else "read: unchanged"] += 1
                    except SourceRejected:
                        outcomes["rejected whole"] += 1
            out["with page checksums" if checksums else "without page checksums"] = outcomes
    return out


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def report(collector: Collector, seconds: float, pages: dict[str, Counter[str]]) -> int:
    f = collector.figures
    bad = f["bad_input"]
    print("### Bad inputs, by class\n")
    print(
        table(
            ["case", "outcome", "message (after month and file)", "rows lost"],
            [[r["case"], r["outcome"], r.get("message", ""), r["rows_lost"]] for r in bad],
        )
    )
    kills = f["kill_point"]
    print("\n### Worker killed (SIGKILL) during a month's write\n")
    print(
        table(
            ["case", "kill point", "seen right after (trips, quarantine, plan)", "unreferenced files", "vacuumed",
             "rows lost"],
            [
                [r["case"], r["point"], ", ".join(r["seen_after_kill"]), r["unreferenced"], r["vacuumed"],
                 r["rows_lost"]]
                for r in kills
            ],
        )
    )  # fmt: skip
    conc = f["concurrency"]
    print("\n### Concurrent runs on S3\n")
    print(
        table(
            ["case", "runs", "month writes", "same-month writes overlapping in time", "named failures",
             "interleaved months", "reads while writing", "mixed reads", "rows lost"],
            [
                [r["case"], r["runs"], r["month_writes"], r["overlapping"], r["failed"], r.get("interleaved", "-"),
                 r["reads"], r["mixed_reads"], r["rows_lost"]]
                for r in conc
            ],
        )
    )  # fmt: skip
    trans = f["transient"]
    print("\n### Transient S3 faults (through the fault proxy)\n")
    print(
        table(
            ["case", "outcome", "faults injected", "rows lost"],
            [[r["case"], r["outcome"], json.dumps(r.get("faults", {})), r["rows_lost"]] for r in trans],
        )
    )
    secrets = f["secrets"]
    print("\n### Secrets\n")
    print(table(["case", "places checked", "leaks"], [[r["case"], r["places"], r["leaks"]] for r in secrets]))
    print("\n### One corrupted column chunk (8 bytes flipped), read by the month reader\n")
    kinds = ["rejected whole", "read: values altered", "read: unchanged"]
    print(table(["file written", *kinds], [[k, *(v[kind] for kind in kinds)] for k, v in pages.items()]))

    rows_lost = sum(int(r.get("rows_lost", 0)) for rs in f.values() for r in rs)
    leaks = sum(int(r["leaks"]) for r in secrets)
    rejected = [r for r in bad if r["outcome"].startswith("rejected")]
    survived = [r for r in kills if r["rows_lost"] == 0]
    held = [r for r in conc if r["mixed_reads"] == 0 and r["rows_lost"] == 0]
    print("\n### Totals\n")
    print(
        table(
            ["figure", "value"],
            [
                ["bad-input cases tried", len(bad)],
                ["of which rejected whole with a named error, nothing written", len(rejected)],
                ["of which cast, quarantined, skipped or retried as documented", len(bad) - len(rejected)],
                ["kill points survived", f"{len(survived)} of {len(kills)}"],
                ["concurrent-run scenarios held", f"{len(held)} of {len(conc)}"],
                ["transient-fault scenarios: ridden out / failed cleanly",
                 f"{sum(r['outcome'].startswith('ridden') for r in trans)} / "
                 f"{sum(r['outcome'].startswith('failed cleanly') for r in trans)}"],
                ["rows lost", rows_lost],
                ["secret leaks", leaks],
                ["tests", ", ".join(f"{n} {k}" for k, n in sorted(collector.outcomes.items()))],
                ["wall time of the scenarios", f"{seconds:.0f} s"],
            ],
        )
    )  # fmt: skip
    return 1 if collector.failed or rows_lost or leaks else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the scenarios marked slow")
    args = parser.parse_args()
    collector, seconds = run_scenarios(args.quick)
    pages = corrupt_pages()
    print()
    return report(collector, seconds, pages)


if __name__ == "__main__":
    raise SystemExit(main())
