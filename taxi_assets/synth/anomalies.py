"""The anomaly catalogue of spec 3.2 / 7.4: ids, per-row rates per mode, and the exclusive draw.

A row gets at most one anomaly from this catalogue, so the ground truth can say exactly why a row is odd.
A11 (drop-off at 264/265) is not drawn here: it is a normal value that the location recipe produces and the
ground truth reports it from the data, overlapping any other id.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

import numpy as np

AnomalyMode = Literal["realistic", "stress", "clean"]

# Spec 3.2 "realistic" per-row rates. A13 counts rows; it is injected as pairs, so half as many draws.
REALISTIC_RATES: Final = MappingProxyType(
    {
        "A1": 5e-4,  # base_passenger_fare < 0
        "A2": 2e-5,  # driver_pay < 0
        "A3": 2e-4,  # base_passenger_fare = 0
        "A4": 1.3e-4,  # trip_miles = 0
        "A5": 1e-4,  # trip_miles > 100
        "A6": 1.4e-5,  # trip_time <= 0
        "A7": 6e-5,  # trip_time > 3 h
        "A8": 4e-5,  # dropoff <= pickup
        "A9": 9.5e-3,  # pickup < request by 1 s .. 15 min (a natural pattern, kept in "clean")
        "A10": 8e-5,  # wait > 60 min
        "A12": 5e-5,  # PU in {264, 265}
        "A13": 2e-6,  # key collision: two rows share license, base, times, zones
        "A14": 2.3e-4,  # shared_match=Y with shared_request=N
        "A15": 6e-6,  # Uber originating != dispatching base
        "A16": 1e-5,  # congestion_surcharge 5.5 or 8.25
        "A18": 1e-5,  # ' ' in shared_request, shared_match or wav_request
    }
)
NATURAL_IDS: Final = frozenset({"A9"})  # what mode "clean" keeps (with A11, which is never drawn)
PROMO_MONTHS: Final = frozenset({"2025-01"})  # S7: fare = 0 at 0.07% in 2025-01
PROMO_A3_RATE: Final = 7e-4
STRESS_FACTOR: Final = 100
STRESS_CAP: Final = 0.02

# Test-only rules (A17), never seen in real fhvhv; each off unless the caller gives it a rate.
A17_RULES: Final = (
    "pickup_outside_month",
    "bad_year",
    "zone_out_of_range",
    "exact_duplicate",
    "null_required",
)
A17_PREFIX: Final = "A17:"
CATEGORY_IDS: Final = (*REALISTIC_RATES, *(A17_PREFIX + rule for rule in A17_RULES))


def anomaly_rates(month: str, mode: AnomalyMode, extra: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per-row probability of each drawn id for this month and mode.

    Stress multiplies by 100 and caps at 2%, but never lowers a rate that is already above the cap (A9),
    so stress data stay a superset of realistic patterns.
    """
    if mode not in ("realistic", "stress", "clean"):
        raise ValueError(f"anomalies must be 'realistic', 'stress' or 'clean', got {mode!r}")
    rates: dict[str, float] = {}
    for anomaly_id, base in REALISTIC_RATES.items():
        rate = PROMO_A3_RATE if anomaly_id == "A3" and month in PROMO_MONTHS else base
        if mode == "stress":
            rate = max(rate, min(rate * STRESS_FACTOR, STRESS_CAP))
        elif mode == "clean" and anomaly_id not in NATURAL_IDS:
            rate = 0.0
        rates[anomaly_id] = rate
    for rule, rate in (extra or {}).items():
        if rule not in A17_RULES:
            raise ValueError(f"unknown A17 rule {rule!r}; choose from {', '.join(A17_RULES)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"A17 rate for {rule!r} must be within 0..1, got {rate}")
        rates[A17_PREFIX + rule] = float(rate)
    if sum(rates.values()) > 1.0:
        raise ValueError("anomaly rates add up to more than 1; lower the A17 rates")
    return rates


def draw_categories(rng: np.random.Generator, n: int, rates: Mapping[str, float]) -> np.ndarray:
    """One exclusive category per row: 0 = none, k = CATEGORY_IDS[k - 1]."""
    probs = np.array([rates.get(anomaly_id, 0.0) for anomaly_id in CATEGORY_IDS])
    probs[CATEGORY_IDS.index("A13")] /= 2  # a draw picks one row of a pair; its partner is marked later
    edges = np.cumsum(probs)
    u = rng.random(n)
    categories = np.zeros(n, dtype=np.int8)
    faulty = np.flatnonzero(u < edges[-1])  # a few percent at most: search only those
    categories[faulty] = np.searchsorted(edges, u[faulty], side="right") + 1
    return categories


def category_code(anomaly_id: str) -> int:
    """The code `draw_categories` uses for an id."""
    return CATEGORY_IDS.index(anomaly_id) + 1
