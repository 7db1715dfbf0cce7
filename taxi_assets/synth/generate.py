"""Synthetic FHVHV months: the published schema, realistic values, and a ground truth of faults.

Pure numpy + pyarrow, no I/O. A month is generated day by day, each day from its own random stream
derived from (seed, month, day), and rows are sorted by request time within the day. Because requests
never leave their day, the concatenated days are sorted for the whole month, and any grouping of days
(the writer's chunks) gives byte-identical rows to a single call. See spec section 7.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
import pyarrow as pa

from taxi_assets.model.zones import OUTSIDE_NYC_ZONE, UNKNOWN_ZONE
from taxi_assets.synth import _params as p
from taxi_assets.synth._columns import draw_on_scene, draw_requests, draw_trips, draw_waits, draw_zones
from taxi_assets.synth._inject import inject
from taxi_assets.synth._money import draw_flags, draw_money, zone_fees
from taxi_assets.synth._table import build_table
from taxi_assets.synth.anomalies import (
    CATEGORY_IDS,
    AnomalyMode,
    anomaly_rates,
    category_code,
    draw_categories,
)
from taxi_assets.synth.eras import month_bounds, parse_month

DAY, HOUR = 86_400, 3_600
WEEKEND_DAY_WEIGHT: Final = 1.1  # spec 7.3.4
UBER_ORIGINATING_NULL, OTHER_ORIGINATING_SET = 1e-5, 0.0012  # S9
EARLY_PICKUP_MAX_S, LONG_WAIT_S = 900, (3601, 21_600)  # A9 (S7, S1) and A10 (S7)
# Stream salts: each purpose draws from its own stream, so adding one never shifts another.
SALT_DAYS, SALT_SHUFFLE, SALT_LAYOUT, SALT_DAY0 = 1, 2, 3, 100
TRUTH_IDS: Final = ("", *CATEGORY_IDS, "A11")  # truth code -> anomaly id; A11 is read off the data
_A11_CODE: Final = len(TRUTH_IDS) - 1


def month_stream(seed: int, month: str, salt: int) -> np.random.Generator:
    """An independent stream per (seed, month, purpose); different months never share draws."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    year, mon = parse_month(month)
    return np.random.default_rng([salt, seed, year, mon])


@dataclass(frozen=True, slots=True)
class MonthChunk:
    """Consecutive rows of a month with the anomalies among them (row indices count from the month start)."""

    table: pa.Table
    first_row: int
    truth_rows: np.ndarray  # int64, sorted
    truth_ids: np.ndarray  # anomaly id per entry, e.g. "A1", "A11", "A17:bad_year"


@dataclass(frozen=True, slots=True)
class _Month:
    month: str
    params: p.MonthParams
    rates: dict[str, float]
    start: int
    end: int
    day_starts: np.ndarray
    weekdays: np.ndarray
    dst_day: int  # -1 when the month has no spring-forward Sunday or the gap is not skipped

    @classmethod
    def of(cls, month: str, rates: dict[str, float], *, skip_dst_gap: bool) -> _Month:
        start, end = (int(t.astype(np.int64)) for t in month_bounds(month))
        day_starts = np.arange(start, end, DAY, dtype=np.int64)
        weekdays = (day_starts // DAY + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        sundays = np.flatnonzero(weekdays == 6)
        dst_day = int(sundays[1]) if skip_dst_gap and month.endswith("-03") else -1  # US rule since 2007
        return cls(month, p.month_params(month), rates, start, end, day_starts, weekdays, dst_day)


def day_row_counts(month: str, rows: int, *, seed: int) -> np.ndarray:
    """Rows per calendar day (by request time): weekends 10% busier; also the `daily` row-group sizes."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    start, end = month_bounds(month)
    days = np.arange(start.astype("datetime64[D]"), end.astype("datetime64[D]"))
    weights = np.where((days.astype(np.int64) + 3) % 7 >= 5, WEEKEND_DAY_WEIGHT, 1.0)
    return month_stream(seed, month, SALT_DAYS).multinomial(rows, weights / weights.sum())


def _bases(rng: np.random.Generator, params: p.MonthParams, lic: np.ndarray) -> tuple[np.ndarray, ...]:
    n, legacy = len(lic), len(p.UBER_LEGACY_BASES_ALL)
    code = {name: np.int16(p.BASES.index(name)) for name in p.BASES}
    uber = rng.integers(0, legacy, n).astype(np.int16)
    if params.uber_main_base is not None:
        uber = np.where(rng.random(n) < p.UBER_MAIN_BASE_SHARE_2022, code[params.uber_main_base], uber)
    choices = (code[p.JUNO_BASE], uber, code[p.VIA_BASE], code[params.lyft_base])
    dispatching = np.choose(lic, choices).astype(np.int16)
    u = rng.random(n)
    originating_null = np.where(lic == p.UBER, u < UBER_ORIGINATING_NULL, u >= OTHER_ORIGINATING_SET)
    return dispatching, dispatching.copy(), originating_null


def _times(
    rng: np.random.Generator, m: _Month, day: int, n: int, cat: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """request, Friday/Saturday-night flag and pickup; applies A9/A10 and keeps pickups in the month."""
    request, night = draw_requests(rng, n, int(m.day_starts[day]), int(m.weekdays[day]), dst_gap_day=day == m.dst_day)
    wait = draw_waits(rng, n)
    early = np.minimum(rng.integers(1, EARLY_PICKUP_MAX_S + 1, n), request - m.start)
    room = m.end - 1 - request  # the latest pickup still inside the month
    late = np.minimum(rng.integers(*LONG_WAIT_S, n, endpoint=True), room)
    a9, a10 = cat == category_code("A9"), cat == category_code("A10")
    cat[(a9 & (early < 1)) | (a10 & (late < LONG_WAIT_S[0]))] = 0  # no room for the fault: a clean row
    wait = np.where(a9 & (cat != 0), -early, np.where(a10 & (cat != 0), late, wait))
    redraw = (rng.random(n) * (room + 1)).astype(np.int64)  # spec 7.3.4: redraw pickups past the month
    wait = np.where(wait > room, redraw, wait)
    return request, night, request + wait


def _skip_dst_gap(rng: np.random.Generator, m: _Month, day: int, times: list[np.ndarray]) -> None:
    """Keep every timestamp out of 02:00-02:59 on spring-forward Sunday (spec 7.3.4, a switch).

    A trip that would straddle the skipped hour moves as a whole to just after it, so wall-clock
    differences stay true durations and no unlisted fault (a 1 h "wait", a trip_time mismatch) appears.
    """
    if day != m.dst_day:
        return
    gap_start = int(m.day_starts[day]) + 2 * HOUR
    gap_end = gap_start + HOUR
    earliest, latest = np.minimum.reduce(times), np.maximum.reduce(times)
    straddles = (earliest < gap_end) & (latest >= gap_start)
    shift = np.where(straddles, gap_end - earliest + rng.integers(0, 600, len(earliest)), 0)
    for values in times:
        values += shift


class _DayRows(NamedTuple):
    cols: dict[str, np.ndarray]  # in draw order
    masks: dict[str, np.ndarray]  # True = null
    order: np.ndarray  # draw index of each output row: sorted by (request, pickup)
    truth: np.ndarray  # (output row, truth code) pairs


def _day(m: _Month, day: int, n: int, seed: int) -> _DayRows:
    """One day's rows, the order that sorts them by (request, pickup), and the faulty rows in that order."""
    rng = np.random.default_rng([SALT_DAY0 + day, seed, *parse_month(m.month)])
    params = m.params
    cat = draw_categories(rng, n, m.rates)
    lic = rng.choice(len(p.LICENSES), n, p=params.license_probs).astype(np.int8)
    lic[cat == category_code("A15")] = p.UBER  # A15 is an Uber fault
    dispatching, originating, originating_null = _bases(rng, params, lic)
    pu, do = draw_zones(rng, n)
    pu = np.where(cat == category_code("A12"), rng.choice((UNKNOWN_ZONE, OUTSIDE_NYC_ZONE), n), pu)
    request, night, pickup = _times(rng, m, day, n, cat)
    on_scene = draw_on_scene(rng, request, pickup)
    miles, seconds = draw_trips(rng, params, pu, do, lic == p.LYFT)
    dropoff = pickup + seconds + rng.integers(-1, 2, n)  # S1: trip_time = dropoff - pickup within 1 s
    _skip_dst_gap(rng, m, day, [request, on_scene, pickup, dropoff])
    flags = draw_flags(rng, params, lic)
    cols: dict[str, np.ndarray] = {
        "hvfhs_license_num": lic,
        "dispatching_base_num": dispatching,
        "originating_base_num": originating,
        "request_datetime": request,
        "on_scene_datetime": on_scene,
        "pickup_datetime": pickup,
        "dropoff_datetime": dropoff,
        "PULocationID": pu,
        "DOLocationID": do,
        "trip_miles": miles,
        "trip_time": seconds,
        **draw_money(rng, params, miles, seconds, night),
        **zone_fees(params, pu, do, pickup, flags["shared_match_flag"] == p.FLAG_Y),
        **flags,
    }
    masks = {"originating_base_num": originating_null, "on_scene_datetime": lic != p.UBER}
    partners = inject(rng, m.start, m.end, cols, masks, cat)
    order = np.lexsort((cols["pickup_datetime"], cols["request_datetime"]))
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    faulty = np.flatnonzero(cat)
    truth = np.concatenate([position[faulty], position[partners]])
    codes = np.concatenate([cat[faulty], np.full(len(partners), category_code("A13"), dtype=np.int8)])
    return _DayRows(cols, masks, order, np.stack([truth, codes.astype(np.int64)], axis=1))


def _chunk(m: _Month, days: range, counts: np.ndarray, first_row: int, seed: int) -> MonthChunk:
    parts = [_day(m, d, int(counts[d]), seed) for d in days]
    sizes = [int(counts[d]) for d in days]
    n, offsets = sum(sizes), np.cumsum([0, *sizes])
    cols = {k: np.empty(n, dtype=v.dtype) for k, v in parts[0].cols.items()}
    masks = {k: np.zeros(n, dtype=bool) for k in sorted({k for part in parts for k in part.masks})}
    for part, offset, size in zip(parts, offsets, sizes, strict=False):
        rows = slice(offset, offset + size)
        for k, values in part.cols.items():  # sort straight into place: one copy per column
            np.take(values, part.order, out=cols[k][rows])
        for k, values in part.masks.items():
            np.take(values, part.order, out=masks[k][rows])
    truth = [part.truth + np.array([offset, 0]) for part, offset in zip(parts, offsets, strict=False)]
    do, do_null = cols["DOLocationID"], masks.get("DOLocationID", np.zeros(n, dtype=bool))
    a11 = np.flatnonzero(((do == UNKNOWN_ZONE) | (do == OUTSIDE_NYC_ZONE)) & ~do_null)
    truth.append(np.stack([a11, np.full(len(a11), _A11_CODE)], axis=1))
    pairs = np.unique(np.concatenate(truth), axis=0)
    return MonthChunk(
        table=build_table(m.month, n, cols, masks),
        first_row=first_row,
        truth_rows=pairs[:, 0] + first_row,
        truth_ids=np.array(TRUTH_IDS, dtype=object)[pairs[:, 1]],
    )


def iter_month_chunks(
    month: str,
    rows: int,
    *,
    seed: int,
    anomalies: AnomalyMode = "realistic",
    extra: Mapping[str, float] | None = None,
    skip_dst_gap: bool = True,
    chunk_rows: int = 1 << 20,
) -> Iterator[MonthChunk]:
    """The month `generate_month` returns (unshuffled), as chunks of whole days of about `chunk_rows` rows.

    Lets a writer hold a few days in memory instead of a full 20 M-row month; concatenating the chunks gives
    the same table byte for byte, whatever `chunk_rows` is.
    """
    m = _Month.of(month, anomaly_rates(month, anomalies, extra), skip_dst_gap=skip_dst_gap)
    counts = day_row_counts(month, rows, seed=seed)
    first_day, first_row, taken = 0, 0, 0
    for day, count in enumerate(counts):
        taken += int(count)
        if taken >= chunk_rows or day == len(counts) - 1:
            yield _chunk(m, range(first_day, day + 1), counts, first_row, seed)
            first_day, first_row, taken = day + 1, first_row + taken, 0


def generate_month(
    month: str,
    rows: int,
    *,
    seed: int,
    anomalies: AnomalyMode = "realistic",
    shuffle: bool = False,
    extra: Mapping[str, float] | None = None,
    skip_dst_gap: bool = True,
) -> tuple[pa.Table, list[tuple[int, str]]]:
    """A month of `rows` trips in the month's published schema, and the injected anomalies.

    The same (month, rows, seed, options) always give byte-identical tables. Rows are sorted by request then
    pickup, unless `shuffle`, the worst case for predicate push-down. The truth lists (row index, anomaly id)
    sorted by row: ids of spec 3.2 ("A1".."A18"; A13 names both rows of a pair, A11 every drop-off at 264/265)
    and "A17:<rule>" for the test-only rules, which are off unless `extra` gives them a per-row rate
    (rules: see `anomalies.A17_RULES`). `skip_dst_gap` keeps timestamps out of the spring-forward hour.
    """
    chunks = list(
        iter_month_chunks(
            month,
            rows,
            seed=seed,
            anomalies=anomalies,
            extra=extra,
            skip_dst_gap=skip_dst_gap,
            chunk_rows=max(rows, 1),
        )
    )
    table = pa.concat_tables([c.table for c in chunks]).combine_chunks()
    truth_rows = np.concatenate([c.truth_rows for c in chunks])
    truth_ids = np.concatenate([c.truth_ids for c in chunks])
    if shuffle:
        permutation = month_stream(seed, month, SALT_SHUFFLE).permutation(rows)
        table = table.take(permutation)
        new_position = np.empty(rows, dtype=np.int64)
        new_position[permutation] = np.arange(rows)
        truth_rows = new_position[truth_rows]
        order = np.lexsort((truth_ids.astype(str), truth_rows))
        truth_rows, truth_ids = truth_rows[order], truth_ids[order]
    return table, [(int(r), str(i)) for r, i in zip(truth_rows, truth_ids, strict=True)]
