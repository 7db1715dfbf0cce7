"""Row-group layouts of spec 7.1: how many rows each row group of a synthetic file holds.

Pure: a layout is a list of group sizes that add up to the month's rows, decided before any row exists,
so the writer can stream rows into groups without holding more than the largest group.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from taxi_assets.synth.eras import Layout
from taxi_assets.synth.generate import SALT_LAYOUT, day_row_counts, month_stream

ARROW_MAX_ROW_GROUP: Final = 1024 * 1024  # newer Arrow C++ default (S15); the 2025 files show it (S8)
SCALED_GROUPS: Final = 20  # a scaled-down month still gets ~20 groups, like a real 2025 file
FULL_SCALE_MIN_ROWS: Final = 16 * ARROW_MAX_ROW_GROUP  # from here on a month counts as full size
BIG_GROUP_SHARE: Final = (0.50, 0.65)  # L3: one group holds at least half the file
TINY_GROUP_SHARE: Final = (0.001, 0.009)  # L3: and the last group less than 1% of it
MIDDLE_GROUPS: Final = (4, 12)
LOGNORMAL_SIGMA: Final = 1.2
LAYOUTS: Final[tuple[Layout, ...]] = ("single", "arrow-1Mi", "nonuniform", "daily")


def row_group_sizes(layout: Layout, rows: int, *, month: str, seed: int) -> list[int]:
    """Group sizes in file order, all > 0, adding up to `rows` (an empty month has no group)."""
    if rows <= 0:
        return []
    if layout == "single":
        return [rows]  # old Arrow's 64 Mi-row default: one group per month (spec 4.2)
    if layout == "arrow-1Mi":
        size = ARROW_MAX_ROW_GROUP if rows >= FULL_SCALE_MIN_ROWS else math.ceil(rows / SCALED_GROUPS)
        return [size] * (rows // size) + ([rows % size] if rows % size else [])
    if layout == "daily":
        return [int(c) for c in day_row_counts(month, rows, seed=seed) if c]
    if layout == "nonuniform":
        return _nonuniform(rows, month=month, seed=seed)
    raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def _nonuniform(rows: int, *, month: str, seed: int) -> list[int]:
    """Lognormal sizes in shuffled order, one group of >= 50% among them, and a tiny last group."""
    if rows < 4:
        return [rows]
    rng = month_stream(seed, month, SALT_LAYOUT)
    big = math.ceil(rows * rng.uniform(*BIG_GROUP_SHARE))
    tiny = max(1, math.floor(rows * rng.uniform(*TINY_GROUP_SHARE)))
    rest = rows - big - tiny
    weights = rng.lognormal(0.0, LOGNORMAL_SIGMA, int(rng.integers(*MIDDLE_GROUPS, endpoint=True)))
    middle = np.floor(rest * weights / weights.sum()).astype(int)
    middle[np.argmax(middle)] += rest - int(middle.sum())
    groups = [int(size) for size in middle if size > 0] + [big]
    order = rng.permutation(len(groups))
    return [groups[i] for i in order] + [tiny]
