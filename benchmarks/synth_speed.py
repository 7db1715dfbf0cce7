"""Rows per second of the synthetic month generator, alone and with the Parquet write (median of 3).

Run: .venv/bin/python benchmarks/synth_speed.py [rows] [month]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from taxi_assets.synth import generate_month, write_month_file

RUNS = 3


def median_seconds(action) -> tuple[float, float]:
    """Median wall and CPU seconds; CPU time is the fairer number on a shared, busy machine."""
    wall, cpu = [], []
    for _ in range(RUNS):
        start, start_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    month = sys.argv[2] if len(sys.argv) > 2 else "2024-03"
    generate_month(month, 1_000, seed=0)  # warm caches and imports outside the timing
    wall, cpu = median_seconds(lambda: generate_month(month, rows, seed=0))
    print(f"generate {rows:,} rows of {month}: {rows / wall:,.0f} rows/s ({wall:.2f} s wall, {cpu:.2f} s CPU)")
    with tempfile.TemporaryDirectory() as directory:
        for layout in ("single", "arrow-1Mi"):
            wall, cpu = median_seconds(lambda: write_month_file(directory, month, rows, seed=0, layout=layout))  # noqa: B023
            print(f"generate+write ({layout}): {rows / wall:,.0f} rows/s ({wall:.2f} s wall, {cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()
