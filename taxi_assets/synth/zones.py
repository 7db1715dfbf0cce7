"""The TLC taxi zone lookup (265 zones) as data, plus the zone sets the generator draws from.

The rows are the real `taxi_zone_lookup.csv` content as published on 2024-02-22 (spec section 6), names
included, with 264 = Unknown/N/A/N/A and 265 = N/A/"Outside of NYC"/N/A. The counts per borough and per
service zone match spec section 6 exactly; tests check them. What is a stand-in here is only the
popularity order used for sampling (`ZONE_POPULARITY_HEAD`): a plausible guess seeded by the top pick-up
zones of the 2020-04 sample (spec 2.2), not a measured ranking.
"""

from __future__ import annotations

from functools import cache
from types import MappingProxyType
from typing import Final

import numpy as np

from taxi_assets.model.zones import ZONE_COUNT, zone_rows

NEWARK_ZONE: Final = 1
AIRPORT_ZONE_IDS: Final = frozenset({NEWARK_ZONE, 132, 138})  # EWR, JFK, LaGuardia: the airport fee ends
# Sampling boroughs, in a fixed order: index = borough code used by the generator.
BOROUGHS: Final = ("Manhattan", "Brooklyn", "Queens", "Bronx", "Staten Island", "EWR")
# Manhattan Yellow Zones north of 60th St: outside the 2025 congestion relief zone (CBD proxy, spec 7.3.15).
_NORTH_OF_60TH: Final = frozenset({236, 237, 238, 239})  # spec proxy: minus Upper East/West Side
# Most-used zones first within each borough; the rest follow in a fixed shuffled order (spec 7.3.17).
ZONE_POPULARITY_HEAD: Final = MappingProxyType(
    {
        "Manhattan": (161, 230, 79, 48, 42, 170, 68, 234, 249, 186, 236, 237, 239, 164, 107, 74),
        "Brooklyn": (76, 39, 35, 89, 17, 61, 37, 225, 181, 188, 255, 71),
        "Queens": (132, 138, 7, 82, 129, 92, 130, 216, 95, 223),
        "Bronx": (168, 69, 119, 247, 159, 174, 78, 126, 235, 167),
        "Staten Island": (),
        "EWR": (NEWARK_ZONE,),
    }
)
_POPULARITY_SEED: Final = 20190201  # fixed: the zone order is part of the generator, not of a run


@cache
def zone_ids_by_borough() -> MappingProxyType[str, tuple[int, ...]]:
    """Zone IDs per borough of `BOROUGHS`, in sampling order (popular head, then a fixed shuffle)."""
    rng = np.random.default_rng(_POPULARITY_SEED)
    result: dict[str, tuple[int, ...]] = {}
    for borough in BOROUGHS:
        ids = [r[0] for r in zone_rows() if r[1] == borough]
        head = ZONE_POPULARITY_HEAD[borough]
        tail = [i for i in ids if i not in head]
        result[borough] = (*head, *(int(i) for i in rng.permutation(tail)))
    return MappingProxyType(result)


@cache
def borough_codes() -> np.ndarray:
    """Borough code (index into `BOROUGHS`) per LocationID; index 0 and 264/265 hold -1."""
    codes = np.full(ZONE_COUNT + 1, -1, dtype=np.int8)
    for code, borough in enumerate(BOROUGHS):
        codes[list(zone_ids_by_borough()[borough])] = code
    codes.flags.writeable = False
    return codes


@cache
def manhattan_yellow_zone_ids() -> frozenset[int]:
    """Manhattan Yellow Zones: the proxy for "south of 96th St" of the congestion surcharge (spec 7.3.11)."""
    return frozenset(r[0] for r in zone_rows() if r[1] == "Manhattan" and r[3] == "Yellow Zone")


@cache
def cbd_zone_ids() -> frozenset[int]:
    """Manhattan Yellow Zones south of 60th St: the proxy for the 2025 congestion relief zone."""
    return manhattan_yellow_zone_ids() - _NORTH_OF_60TH
