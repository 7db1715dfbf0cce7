"""Quality rules as data, and the split of a batch into clean and quarantined rows.

Each rule is one entry of :data:`RULES`: a name, a documented reason and a vectorised Arrow expression that is
true where a row breaks it. Adding a rule is adding an entry. A row breaking any rule goes to ``quarantine`` with
the names of every rule it breaks, so ``source rows = clean rows + quarantined rows`` holds by construction.
Thresholds follow ``../shared/spec/fhvhv.md`` section 3 (the S6 cleaning filter: keep ``0 < trip_miles <= 100``,
``0 < trip_time <= 10800``, ``fare >= 0``, ``driver_pay >= 0``, ``dropoff > pickup``) unless a reason says
otherwise. What is *not* a rule, on purpose (spec 3.1/3.2): pickup before request (0.95 %, a natural pattern),
waits over an hour (scheduled rides), fare = 0 (promotions), zones 264/265 (official codes), odd flag
combinations (A14, A18: the odd flag itself becomes null and is counted by :mod:`taxi_assets.model.casts`), and
duplicate rows, which no row-local rule can see (``taxi_assets.checks.verify`` checks them on the committed month).

Pure: pyarrow in, pyarrow out; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from partitions.keys import month_bounds
from taxi_assets.model.schema import REQUIRED, ZONE_MAX, ZONE_MIN, quarantine_schema, trips_schema

# Spec 2.4: every pickup of every published month lies inside the file's month (0 exceptions in 1.6 B rows),
# so there is no tolerance: a pickup outside the month is a row filed under the wrong key.
PICKUP_TOLERANCE: Final = timedelta(0)
MAX_MILES: Final = 100.0  # S6 filter; 0.0097 % of rows are above (spec 3.1)
MAX_SECONDS: Final = 3 * 3600  # S6 filter; 0.0063 % above
MAX_FARE: Final = 2_500.0  # not in S6: the largest fare seen is $1,910 (S12); above this is a unit error
CHARGE_COLUMNS: Final = ("tolls", "bcf", "sales_tax", "congestion_surcharge", "tips")


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule may know besides the row: the month the file is published as."""

    month_start: datetime
    month_end: datetime


@dataclass(frozen=True, slots=True)
class Rule:
    """A named quality rule: ``broken(ctx)`` is an Arrow expression true on the rows that break it."""

    name: str
    reason: str
    broken: Callable[[RuleContext], pc.Expression]


def _f(name: str) -> pc.Expression:
    return pc.field(name)


def _any(exprs: Sequence[pc.Expression]) -> pc.Expression:
    out = exprs[0]
    for e in exprs[1:]:
        out = out | e
    return out


def _zone_out_of_range(col: str) -> pc.Expression:
    return (_f(col) < ZONE_MIN) | (_f(col) > ZONE_MAX)


def _ts(value: datetime) -> pa.Scalar:
    return pa.scalar(value, pa.timestamp("us"))


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "missing_required",
        "a required column is null: the trip cannot be placed, timed or priced",
        lambda _: _any([_f(c).is_null() for c in REQUIRED]),
    ),
    Rule(
        "dropoff_not_after_pickup",
        "drop-off at or before pickup: the clock of the trip is broken",
        lambda _: _f("dropoff_datetime") <= _f("pickup_datetime"),
    ),
    Rule(
        "pickup_outside_month",
        "pickup outside the month the file is published for (never seen in FHVHV: filed under the wrong key)",
        lambda ctx: (
            (_f("pickup_datetime") < _ts(ctx.month_start - PICKUP_TOLERANCE))
            | (_f("pickup_datetime") >= _ts(ctx.month_end + PICKUP_TOLERANCE))
        ),
    ),
    Rule(
        "zone_out_of_range",
        f"PULocationID or DOLocationID outside the TLC zone codes {ZONE_MIN}..{ZONE_MAX}",
        lambda _: _zone_out_of_range("PULocationID") | _zone_out_of_range("DOLocationID"),
    ),
    Rule(
        "negative_fare",
        "base_passenger_fare below zero: a refund or adjustment, not a trip fare",
        lambda _: _f("base_passenger_fare") < 0,
    ),
    Rule(
        "fare_over_limit",
        f"base_passenger_fare above ${MAX_FARE:,.0f}: above any fare ever published, a unit or entry error",
        lambda _: _f("base_passenger_fare") > MAX_FARE,
    ),
    Rule("negative_driver_pay", "driver_pay below zero: a claw-back, not a trip", lambda _: _f("driver_pay") < 0),
    Rule(
        "non_positive_miles",
        "trip_miles zero or negative: no trip took place",
        lambda _: _f("trip_miles") <= 0,
    ),
    Rule(
        "miles_over_limit",
        f"trip_miles above {MAX_MILES:.0f}: beyond any trip within the service area",
        lambda _: _f("trip_miles") > MAX_MILES,
    ),
    Rule("non_positive_duration", "trip_time zero or negative seconds", lambda _: _f("trip_time") <= 0),
    Rule(
        "duration_over_limit",
        f"trip_time above {MAX_SECONDS // 3600} hours: a meter left running",
        lambda _: _f("trip_time") > MAX_SECONDS,
    ),
    Rule(
        "negative_charge",
        "tolls, bcf, sales_tax, congestion_surcharge or tips below zero: charges are never refunds",
        lambda _: _any([_f(c) < 0 for c in CHARGE_COLUMNS]),
    ),
)
RULE_NAMES: Final = tuple(r.name for r in RULES)


@dataclass(frozen=True, slots=True)
class Split:
    """One batch cut in two; ``by_rule`` counts the quarantined rows breaking each rule (a row may count twice).

    The clean rows are ``batch`` where ``keep`` is true (``keep`` is None when every row is clean). They are
    not copied out here: a streaming writer filters them on its own thread (``taxi_assets.io.writer_pool``),
    because that copy is most of the cost of a split; :attr:`clean` makes it on demand.
    """

    batch: pa.RecordBatch  # every row, on trips_schema() or trips_batch_schema()
    keep: pa.BooleanArray | None
    quarantine: pa.RecordBatch  # on quarantine_schema()
    by_rule: dict[str, int] = field(default_factory=dict)

    @property
    def clean(self) -> pa.RecordBatch:
        return self.batch if self.keep is None else self.batch.filter(self.keep)

    @property
    def clean_rows(self) -> int:
        return int(self.batch.num_rows - self.quarantine.num_rows)


def context_for(month: str) -> RuleContext:
    start, end = month_bounds(month)
    return RuleContext(start, end)


def split(batch: pa.RecordBatch, ctx: RuleContext, *, first_row: int, rules: Sequence[Rule] = RULES) -> Split:
    """Evaluate every rule on a canonical batch in one vectorised pass and split it.

    ``first_row`` is the batch's offset in the source file, kept per quarantined row so each can be traced.
    A null outcome (a comparison with a null value) counts as not broken: nulls in required columns are the
    business of ``missing_required`` alone. Python work is per distinct *combination* of broken rules, never
    per row: each quarantined row gets a bit code, and the rule lists are built once per code and taken.
    """
    if len(rules) > 62:
        raise ValueError("split encodes the broken rules of a row in an int64: at most 62 rules")
    masks = ds.dataset(pa.Table.from_batches([batch])).to_table(
        columns={r.name: pc.coalesce(r.broken(ctx), pa.scalar(False)) for r in rules}, use_threads=False
    )
    columns = [masks.column(i).combine_chunks() for i in range(masks.num_columns)]
    broken_any = columns[0]
    for column in columns[1:]:
        broken_any = pc.or_(broken_any, column)
    if not pc.any(broken_any).as_py():
        return Split(batch, None, _empty_quarantine())
    idx = pc.indices_nonzero(broken_any)
    codes = np.zeros(len(idx), dtype=np.int64)
    for bit, column in enumerate(columns):
        codes |= column.take(idx).to_numpy(zero_copy_only=False).astype(np.int64) << bit
    distinct, inverse = np.unique(codes, return_inverse=True)
    per_code = [[r for bit, r in enumerate(rules) if int(code) >> bit & 1] for code in distinct]
    positions = pa.array(inverse.astype(np.int32))
    names = pa.array([[r.name for r in hit] for hit in per_code], pa.list_(pa.string())).take(positions)
    reasons = pa.array(["; ".join(r.reason for r in hit) for hit in per_code], pa.string()).take(positions)
    counts = np.bincount(inverse, minlength=len(distinct))
    by_rule: dict[str, int] = {}
    for hit, count in zip(per_code, counts.tolist(), strict=True):
        for r in hit:
            by_rule[r.name] = by_rule.get(r.name, 0) + count
    canonical = [  # the quarantine table stores plain strings, whatever layout the batch uses
        column if column.type == f.type else column.cast(f.type)
        for column, f in zip(batch.take(idx).columns, trips_schema(), strict=True)
    ]
    quarantine = pa.RecordBatch.from_arrays(
        [*canonical, pc.add(idx.cast(pa.int64()), first_row), names, reasons], schema=quarantine_schema()
    )
    return Split(batch, pc.invert(broken_any), quarantine, by_rule)


def _empty_quarantine() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=quarantine_schema())


# -- a whole file under the wrong key ---------------------------------------------------------------------------

MISFILED_SHARE: Final = 0.5  # more than this share of a file's rows outside its month: the file, not the rows


@dataclass(frozen=True, slots=True)
class Misfiled:
    """The verdict on a file most of whose rows fall outside the month its name claims."""

    outside: int  # rows with a pickup outside the claimed month
    rows: int  # all rows of the file
    likely: str  # the month most of those rows fall in


def misfiled(month: str, rows: int, by_month: Mapping[str, int]) -> Misfiled | None:
    """``None`` unless more than half of the ``rows`` have a pickup outside ``month`` (``by_month``: pickups per
    month, nulls not counted).

    A handful of rows outside the month are bad rows: quarantined with ``pickup_outside_month``. Most of the
    file outside it is one bad *file*: a copy of another month (``..._2019-05.parquet`` saved as 2019-04), which
    would otherwise replace a good month with an empty one while every check passes (spec 2.4: no published
    month has a single pickup outside its month).
    """
    outside = {key: n for key, n in by_month.items() if key != month and n > 0}
    count = sum(outside.values())
    if rows <= 0 or count <= rows * MISFILED_SHARE:
        return None
    likely = max(sorted(outside), key=lambda key: outside[key])
    return Misfiled(outside=count, rows=rows, likely=likely)
