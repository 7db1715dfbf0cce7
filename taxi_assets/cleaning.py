"""Quality rules as data, and the split of a batch into clean and quarantined rows.

Each rule is one entry of :data:`RULES`: a name, a documented reason and a vectorised Arrow expression that is
true where a row breaks it. Adding a rule is adding an entry. A row breaking any rule goes to ``quarantine`` with
the names of every rule it breaks, so ``source rows = clean rows + quarantined rows`` holds by construction.
Thresholds follow ``../shared/spec/fhvhv.md`` section 3 (the S6 cleaning filter) unless a reason says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from partitions.keys import month_bounds
from taxi_assets.schema import REQUIRED, ZONE_MAX, ZONE_MIN, quarantine_schema

PICKUP_TOLERANCE: Final = timedelta(hours=1)
MAX_MILES: Final = 100.0
MAX_SECONDS: Final = 3 * 3600
MAX_FARE: Final = 2_500.0


@dataclass(frozen=True, slots=True)
class RuleContext:
    """What a rule may know besides the row: the month the file is published as."""

    month_start: datetime
    month_end: datetime


@dataclass(frozen=True, slots=True)
class Rule:
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
        "pickup more than an hour outside the month the file is published for",
        lambda ctx: (
            (_f("pickup_datetime") < pa.scalar(ctx.month_start - PICKUP_TOLERANCE, pa.timestamp("us")))
            | (_f("pickup_datetime") >= pa.scalar(ctx.month_end + PICKUP_TOLERANCE, pa.timestamp("us")))
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
        f"base_passenger_fare above ${MAX_FARE:,.0f}",
        lambda _: _f("base_passenger_fare") > MAX_FARE,
    ),
    Rule("negative_driver_pay", "driver_pay below zero", lambda _: _f("driver_pay") < 0),
    Rule(
        "non_positive_miles",
        "trip_miles zero or negative: no trip took place",
        lambda _: _f("trip_miles") <= 0,
    ),
    Rule("miles_over_limit", f"trip_miles above {MAX_MILES:.0f}", lambda _: _f("trip_miles") > MAX_MILES),
    Rule("non_positive_duration", "trip_time zero or negative seconds", lambda _: _f("trip_time") <= 0),
    Rule(
        "duration_over_limit",
        f"trip_time above {MAX_SECONDS // 3600} hours",
        lambda _: _f("trip_time") > MAX_SECONDS,
    ),
    Rule(
        "negative_charge",
        "tolls, bcf, sales_tax, congestion_surcharge or tips below zero",
        lambda _: _any([_f(c) < 0 for c in ("tolls", "bcf", "sales_tax", "congestion_surcharge", "tips")]),
    ),
)
RULE_NAMES: Final = tuple(r.name for r in RULES)


@dataclass(frozen=True, slots=True)
class Split:
    clean: pa.RecordBatch
    quarantine: pa.RecordBatch  # on quarantine_schema()


def context_for(month: str) -> RuleContext:
    start, end = month_bounds(month)
    return RuleContext(start, end)


def split(batch: pa.RecordBatch, ctx: RuleContext, *, first_row: int, rules: Sequence[Rule] = RULES) -> Split:
    """Evaluate every rule on a canonical batch in one vectorised pass and split it.

    ``first_row`` is the batch's offset in the source file, kept per quarantined row so each can be traced.
    A null outcome (a comparison with a null value) counts as not broken: nulls in required columns are the
    business of ``missing_required`` alone.
    """
    masks = ds.dataset(pa.Table.from_batches([batch])).to_table(
        columns={r.name: pc.coalesce(r.broken(ctx), pa.scalar(False)) for r in rules}
    )
    broken_any = _or_all(masks).combine_chunks()
    if not pc.any(broken_any).as_py():
        return Split(batch, _empty_quarantine())
    clean = batch.filter(pc.invert(broken_any))
    idx = pc.indices_nonzero(broken_any)
    bad = batch.take(idx)
    hit = [masks.column(r.name).combine_chunks().take(idx) for r in rules]
    names = [
        [r.name for r, h in zip(rules, row, strict=True) if h]
        for row in zip(*[h.to_pylist() for h in hit], strict=True)
    ]
    reason_of = {r.name: r.reason for r in rules}
    reasons = ["; ".join(reason_of[n] for n in row) for row in names]
    q = pa.RecordBatch.from_arrays(
        [
            *bad.columns,
            pc.add(idx, first_row).cast(pa.int64()),
            pa.array(names, pa.list_(pa.string())),
            pa.array(reasons),
        ],
        schema=quarantine_schema(),
    )
    return Split(clean, q)


def _or_all(masks: pa.Table) -> pa.ChunkedArray:
    out = masks.column(0)
    for i in range(1, masks.num_columns):
        out = pc.or_(out, masks.column(i))
    return out


def _empty_quarantine() -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=quarantine_schema())
