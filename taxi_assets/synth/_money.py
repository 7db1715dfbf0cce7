"""Fare, fee and flag recipes of spec 7.3 (items 7-16) for one block of clean rows."""

from __future__ import annotations

from typing import Final

import numpy as np

from taxi_assets.synth import _params as p
from taxi_assets.synth._columns import zone_tables

SURGE_SIGMA: Final = 0.25
NIGHT_SURGE_SHARE, NIGHT_SURGE_MU, NIGHT_SURGE_SIGMA = 0.05, 0.5, 0.3
TOLL_SHARE, SECOND_TOLL_SHARE, ODD_TOLL_SHARE = 0.08, 0.1, 0.02  # S1: 91% of 2020-04 rows had no toll
TIP_MEDIAN_SHARE, TIP_SIGMA, TIP_CAP = 0.22, 0.5, 200.0  # S1 IQR 0.17-0.32, S12 max ~200
PAY_MEAN, PAY_SD, PAY_MIN, PAY_MAX = 0.77, 0.08, 0.45, 1.2  # S1 pay/fare, S16 79%
HIGH_PAY_SHARE: Final = 0.01  # WAV or minimum-pay trips: pay above the fare (S1 p95 1.06, max 3.0)
SHARED_MATCH_GIVEN_REQUEST: Final = 0.244  # S9
WAV_REQUEST_SHARE: Final = 0.0013  # S9
WAV_MATCH_GIVEN_REQUEST, WAV_MATCH_OTHERWISE = 0.977, 0.058  # S9: WAVs also serve ordinary requests


def share_of(fare: np.ndarray, rate: float) -> np.ndarray:
    """A fee that is a fixed share of the fare, rounded to cents; nothing is due on a fare <= 0."""
    return np.where(fare > 0, np.round(rate * fare, 2), 0.0)


def draw_money(
    rng: np.random.Generator,
    params: p.MonthParams,
    miles: np.ndarray,
    seconds: np.ndarray,
    night: np.ndarray,
) -> dict[str, np.ndarray]:
    """base_passenger_fare, tolls, bcf, sales_tax, tips and driver_pay of clean rows."""
    n = len(miles)
    surge = np.exp(SURGE_SIGMA * rng.standard_normal(n))
    night_surge = np.exp(NIGHT_SURGE_MU + NIGHT_SURGE_SIGMA * rng.standard_normal(n))
    surge = np.where(night & (rng.random(n) < NIGHT_SURGE_SHARE), night_surge, surge)
    raw = (params.fare_base + params.fare_per_mile * miles + params.fare_per_minute * seconds / 60) * surge
    fare = np.round(np.maximum(params.min_fare, raw), 2)

    toll = rng.choice(np.array(params.toll_values), n) * (1 + (rng.random(n) < SECOND_TOLL_SHARE))
    toll = np.where(rng.random(n) < ODD_TOLL_SHARE, np.round(rng.uniform(0.10, 0.60, n), 2), toll)
    tolls = np.where(rng.random(n) < TOLL_SHARE, np.round(toll, 2), 0.0)

    tip_share = TIP_MEDIAN_SHARE * np.exp(TIP_SIGMA * rng.standard_normal(n))
    tips = np.where(rng.random(n) >= params.tip_zero_share, np.minimum(np.round(fare * tip_share, 2), TIP_CAP), 0.0)

    pay_share = np.clip(rng.normal(PAY_MEAN, PAY_SD, n), PAY_MIN, PAY_MAX)
    pay_share = np.where(rng.random(n) < HIGH_PAY_SHARE, rng.uniform(1.0, 3.0, n), pay_share)
    return {
        "base_passenger_fare": fare,
        "tolls": tolls,
        "bcf": share_of(fare, params.bcf_rate),
        "sales_tax": share_of(fare, p.SALES_TAX_RATE),
        "tips": tips,
        "driver_pay": np.round(fare * pay_share, 2),
    }


def zone_fees(
    params: p.MonthParams, pu: np.ndarray, do: np.ndarray, pickup: np.ndarray, shared_match: np.ndarray
) -> dict[str, np.ndarray]:
    """congestion_surcharge, airport_fee and cbd_congestion_fee, which follow from the zones alone."""
    z = zone_tables()
    in_zone = z.yellow[pu] | z.yellow[do]
    fees = {
        "congestion_surcharge": np.where(
            in_zone, np.where(shared_match, p.SHARED_CONGESTION_SURCHARGE, p.CONGESTION_SURCHARGE), 0.0
        ),
        "airport_fee": p.AIRPORT_FEE * (z.airport[pu].astype(float) + z.airport[do]),
    }
    if params.has_cbd_fee:
        charged = (pickup >= p.CBD_START.astype(np.int64)) & (z.cbd[pu] | z.cbd[do])
        fees["cbd_congestion_fee"] = np.where(charged, p.CBD_FEE, 0.0)
    return fees


def draw_flags(rng: np.random.Generator, params: p.MonthParams, license_code: np.ndarray) -> dict[str, np.ndarray]:
    """The five Y/N flags as codes of `FLAG_VALUES`; Uber writes ' ' for access_a_ride (S1, S9)."""
    n = len(license_code)
    shared_request = rng.random(n) < params.shared_request_share
    shared_match = shared_request & (rng.random(n) < SHARED_MATCH_GIVEN_REQUEST)
    access_yes = rng.random(n) < params.access_a_ride_yes_share
    access = np.where(license_code == p.UBER, p.FLAG_BLANK, np.where(access_yes, p.FLAG_Y, p.FLAG_N))
    wav_request = rng.random(n) < WAV_REQUEST_SHARE
    wav_match = rng.random(n) < np.where(wav_request, WAV_MATCH_GIVEN_REQUEST, WAV_MATCH_OTHERWISE)
    return {
        "shared_request_flag": shared_request.astype(np.int8),
        "shared_match_flag": shared_match.astype(np.int8),
        "access_a_ride_flag": access.astype(np.int8),
        "wav_request_flag": wav_request.astype(np.int8),
        "wav_match_flag": wav_match.astype(np.int8),
    }
