"""Per-period recipe parameters of spec 7.3: who drives, from which base, at what price.

Everything is an estimate tagged [E] in the spec unless it cites a source there; the values are tunable
defaults, kept in one place so a calibration change is one edit. Pure: no I/O, no randomness.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

from taxi_assets.synth.eras import airport_fee_filled, era_of, parse_month

# hvfhs_license_num codes (spec 2.1); the index is the code the generator works with.
LICENSES: Final = ("HV0002", "HV0003", "HV0004", "HV0005")  # Juno, Uber, Via, Lyft
JUNO, UBER, VIA, LYFT = 0, 1, 2, 3
FLAG_VALUES: Final = ("N", "Y", " ")  # flag codes: 0 = N, 1 = Y, 2 = one space (spec 2.3)
FLAG_N, FLAG_Y, FLAG_BLANK = 0, 1, 2

# Spec 7.3.2: about 25 Uber LLC bases from S4's fhv_bases.csv, then B03404 from 2022.
_UBER_OLD_RANGE: Final = tuple(f"B0{n}" for n in range(2864, 2890) if n not in {2868, 2873, 2874, 2881, 2885, 2886})
UBER_LEGACY_BASES: Final = (
    "B02395",
    "B02512",
    "B02598",
    "B02617",
    "B02682",
    "B02764",
    "B02765",
    "B02835",
    "B02836",
)
UBER_LEGACY_BASES_ALL: Final = UBER_LEGACY_BASES + _UBER_OLD_RANGE
UBER_BASE_2022: Final = "B03404"
LYFT_BASE_OLD, LYFT_BASE_2022 = "B02510", "B03406"  # the switch month is unknown; we switch at 2022-01
VIA_BASE, JUNO_BASE = "B02800", "B02914"
BASES: Final = (*UBER_LEGACY_BASES_ALL, UBER_BASE_2022, LYFT_BASE_OLD, LYFT_BASE_2022, VIA_BASE, JUNO_BASE)
UBER_MAIN_BASE_SHARE_2022: Final = 0.9993  # S9: B03404 carries 99.93% of Uber trips in 2022

SALES_TAX_RATE: Final = 0.08875  # S1, S12, S14
CONGESTION_SURCHARGE: Final = 2.75
SHARED_CONGESTION_SURCHARGE: Final = 0.75
AIRPORT_FEE: Final = 2.50  # per airport end (S13); 5.00 for both ends is [E]
CBD_FEE: Final = 1.50  # S17, from 2025-01-05
CBD_START: Final = np.datetime64("2025-01-05T00:00:00", "s")


@dataclass(frozen=True, slots=True)
class MonthParams:
    """Everything in the column recipes that changes with the month."""

    month: str
    license_probs: tuple[float, float, float, float]  # by license code
    uber_main_base: str | None  # B03404 from 2022, None before (uniform over legacy bases)
    lyft_base: str
    miles_median: float
    speed_median_mph: float
    min_fare: float
    fare_base: float
    fare_per_mile: float
    fare_per_minute: float
    bcf_rate: float
    toll_values: tuple[float, ...]
    tip_zero_share: float
    shared_request_share: float
    access_a_ride_yes_share: float  # non-Uber rows only
    airport_fee_filled: bool
    has_cbd_fee: bool

    @property
    def uber_share(self) -> float:
        return self.license_probs[UBER]


def _license_probs(month: str) -> tuple[float, float, float, float]:
    if month <= "2019-11":
        return (0.04, 0.68, 0.05, 0.23)
    if month <= "2021-12":
        return (0.0, 0.70, 0.02, 0.28)
    uber = 0.724 if month < "2023-01" else 0.73 if month < "2025-01" else 0.75  # S9, S7, S16
    return (0.0, uber, 0.0, round(1.0 - uber, 6))


def _shared_request_share(month: str) -> float:
    if month < "2020-01":
        return 0.08  # [E, low confidence]
    if month < "2020-04":
        return 0.05  # [E] before the COVID suspension
    if month < "2021-07":
        return 0.0  # S1: no shared request in the 2020-04 sample
    if month < "2022-01":
        return 0.003  # [E] relaunch
    return 0.009  # S9


def month_params(month: str) -> MonthParams:
    """The recipe parameters for one month (spec 7.3 tables, boundaries marked [E] there)."""
    year, _ = parse_month(month)
    pandemic = "2020-04" <= month <= "2020-12"
    if year <= 2020:
        fare = (7.0, 2.5, 1.2, 0.45)
    elif year == 2021:
        fare = (7.5, 2.5, 1.35, 0.55)  # [E] midway between the 2020 and 2022 rows of the spec table
    else:
        fare = (8.0, 2.5, 1.5, 0.65)
    return MonthParams(
        month=month,
        license_probs=_license_probs(month),
        uber_main_base=UBER_BASE_2022 if year >= 2022 else None,
        lyft_base=LYFT_BASE_2022 if year >= 2022 else LYFT_BASE_OLD,
        miles_median=3.0 if year <= 2021 else 3.2,
        # Faster than the spec's 11 mph so that median trip_time lands near its 900 s target (spec 7.3.6).
        speed_median_mph=17.0 if pandemic else 13.0,
        min_fare=fare[0],
        fare_base=fare[1],
        fare_per_mile=fare[2],
        fare_per_minute=fare[3],
        bcf_rate=0.025 if year <= 2020 else 0.030 if year <= 2022 else 0.0275,
        toll_values=(6.12,) if year <= 2020 else (6.55,) if year <= 2022 else (6.94,),
        tip_zero_share=0.865 if year == 2020 else 0.85,
        shared_request_share=_shared_request_share(month),
        access_a_ride_yes_share=0.0005 if year == 2019 else 0.0,
        airport_fee_filled=airport_fee_filled(month),
        has_cbd_fee=era_of(month) == "E",
    )
