"""Applies the drawn anomalies (spec 3.2 / 7.4) to a block of clean rows, in place.

A9 and A10 change the wait and are applied where the timestamps are drawn; everything else is here.
Copy anomalies (A13, A17 exact_duplicate) take their source from rows that carry no anomaly, so the
copy cannot import someone else's fault.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from taxi_assets.synth import _params as p
from taxi_assets.synth.anomalies import category_code

DAY = 86_400
REQUIRED_COLUMNS: Final = (
    "hvfhs_license_num", "dispatching_base_num", "request_datetime", "pickup_datetime", "dropoff_datetime",
    "PULocationID", "DOLocationID", "trip_miles", "trip_time", "base_passenger_fare", "driver_pay",
)  # fmt: skip
_MONEY_COLUMNS: Final = (
    "trip_miles",
    "base_passenger_fare",
    "tolls",
    "bcf",
    "sales_tax",
    "tips",
    "driver_pay",
)
_TIME_SHIFTED: Final = ("on_scene_datetime", "pickup_datetime", "dropoff_datetime")
BAD_YEARS: Final = (2001, 2098)  # yellow's extremes (S6); never seen in fhvhv
SURCHARGE_MULTIPLES: Final = (5.5, 8.25)  # S12 saw 8.25 = 3 x 2.75


def _rows(cat: np.ndarray, anomaly_id: str) -> np.ndarray:
    return np.flatnonzero(cat == category_code(anomaly_id))


def inject(
    rng: np.random.Generator,
    month_start: int,
    month_end: int,
    cols: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    cat: np.ndarray,
) -> np.ndarray:
    """Turn each drawn row into its anomaly; returns the partner rows of A13 pairs (also faulty)."""
    _money_faults(rng, cols, cat)
    _trip_faults(rng, cols, cat)
    _label_faults(rng, cols, masks, cat)
    _test_only_faults(rng, month_start, month_end, cols, masks, cat)
    return _copies(rng, cols, masks, cat)


def _money_faults(rng: np.random.Generator, cols: dict[str, np.ndarray], cat: np.ndarray) -> None:
    refund = _rows(cat, "A1")
    cols["base_passenger_fare"][refund] = -np.round(rng.uniform(0.5, 50.0, len(refund)), 2)
    free = _rows(cat, "A3")
    cols["base_passenger_fare"][free] = 0.0
    for name in ("bcf", "sales_tax", "tips"):  # nothing is due on a fare <= 0 (spec 7.3.9-10)
        cols[name][refund] = 0.0
        cols[name][free] = 0.0
    cols["driver_pay"][free] = 0.0
    clawback = _rows(cat, "A2")
    cols["driver_pay"][clawback] = -np.round(rng.uniform(0.5, 70.0, len(clawback)), 2)
    surcharge = _rows(cat, "A16")
    cols["congestion_surcharge"][surcharge] = rng.choice(SURCHARGE_MULTIPLES, len(surcharge))


def _trip_faults(rng: np.random.Generator, cols: dict[str, np.ndarray], cat: np.ndarray) -> None:
    cols["trip_miles"][_rows(cat, "A4")] = 0.0
    far = _rows(cat, "A5")
    cols["trip_miles"][far] = np.round(rng.uniform(100.5, 420.0, len(far)), 2)
    stuck = _rows(cat, "A6")
    cols["trip_time"][stuck] = np.where(rng.random(len(stuck)) < 0.5, 0, -rng.integers(1, 601, len(stuck)))
    long = _rows(cat, "A7")
    cols["trip_time"][long] = rng.integers(3 * 3600 + 1, 52_201, len(long))  # up to ~14.5 h (S12)
    cols["dropoff_datetime"][long] = cols["pickup_datetime"][long] + cols["trip_time"][long]
    back = _rows(cat, "A8")
    cols["dropoff_datetime"][back] = cols["pickup_datetime"][back] - rng.integers(0, 601, len(back))


def _label_faults(
    rng: np.random.Generator, cols: dict[str, np.ndarray], masks: dict[str, np.ndarray], cat: np.ndarray
) -> None:
    odd_match = _rows(cat, "A14")
    cols["shared_request_flag"][odd_match] = p.FLAG_N
    cols["shared_match_flag"][odd_match] = p.FLAG_Y
    other_base = _rows(cat, "A15")  # these rows were forced to Uber when the licenses were drawn
    legacy = len(p.UBER_LEGACY_BASES_ALL)
    alternative = rng.integers(0, legacy, len(other_base)).astype(np.int16)
    alternative = np.where(
        alternative == cols["dispatching_base_num"][other_base], (alternative + 1) % legacy, alternative
    )
    cols["originating_base_num"][other_base] = alternative
    masks["originating_base_num"][other_base] = False
    blank = _rows(cat, "A18")
    which = rng.integers(0, 3, len(blank))
    for k, name in enumerate(("shared_request_flag", "shared_match_flag", "wav_request_flag")):
        cols[name][blank[which == k]] = p.FLAG_BLANK


def _shift_times(cols: dict[str, np.ndarray], rows: np.ndarray, delta: np.ndarray) -> None:
    for name in _TIME_SHIFTED:
        cols[name][rows] += delta


def _test_only_faults(
    rng: np.random.Generator,
    month_start: int,
    month_end: int,
    cols: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    cat: np.ndarray,
) -> None:
    # The request stays put, so the file keeps its sort order; only the trip's own times move.
    outside = _rows(cat, "A17:pickup_outside_month")
    before = rng.random(len(outside)) < 0.5
    target = np.where(
        before,
        month_start - rng.integers(1, 7 * DAY, len(outside)),
        month_end + rng.integers(0, 7 * DAY, len(outside)),
    )
    _shift_times(cols, outside, target - cols["pickup_datetime"][outside])

    bad = _rows(cat, "A17:bad_year")
    start = np.datetime64(month_start, "s")
    month = str(start.astype("datetime64[M]"))[4:]
    shifts = [(np.datetime64(f"{y}{month}-01", "s") - start).astype(np.int64) for y in BAD_YEARS]
    _shift_times(cols, bad, np.where(rng.random(len(bad)) < 0.5, shifts[0], shifts[1]))

    zone = _rows(cat, "A17:zone_out_of_range")
    value = np.where(rng.random(len(zone)) < 0.5, 0, rng.integers(266, 1000, len(zone)))
    on_pickup = rng.random(len(zone)) < 0.5
    cols["PULocationID"][zone[on_pickup]] = value[on_pickup]
    cols["DOLocationID"][zone[~on_pickup]] = value[~on_pickup]

    missing = _rows(cat, "A17:null_required")
    which = rng.integers(0, len(REQUIRED_COLUMNS), len(missing))
    for k, name in enumerate(REQUIRED_COLUMNS):
        mask = masks.setdefault(name, np.zeros(len(cat), dtype=bool))
        mask[missing[which == k]] = True


def _copies(
    rng: np.random.Generator, cols: dict[str, np.ndarray], masks: dict[str, np.ndarray], cat: np.ndarray
) -> np.ndarray:
    clean = np.flatnonzero(cat == 0)
    partners = np.empty(0, dtype=np.int64)
    for anomaly_id in ("A13", "A17:exact_duplicate"):
        rows = _rows(cat, anomaly_id)
        if len(rows) and not len(clean):
            cat[rows] = 0  # a one-row block has nothing to copy from
            continue
        source = clean[rng.integers(0, len(clean), len(rows))] if len(rows) else rows
        keep = _MONEY_COLUMNS if anomaly_id == "A13" else ()  # A13: same key, different trip
        for name, values in cols.items():
            if name not in keep:
                values[rows] = values[source]
        for mask in masks.values():
            mask[rows] = mask[source]
        if anomaly_id == "A13":
            partners = source.astype(np.int64)
    return partners
