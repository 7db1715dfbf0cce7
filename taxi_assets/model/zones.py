"""TODO docstring."""

from __future__ import annotations

from functools import cache
from typing import Final

import pyarrow as pa

from taxi_assets.model._zone_data import ZONE_ROWS

ZONE_COUNT: Final = 265


UNKNOWN_ZONE: Final = 264


OUTSIDE_NYC_ZONE: Final = 265


@cache
def _rows() -> tuple[tuple[int, str, str, str], ...]:
    parsed = []
    for line in ZONE_ROWS.strip().splitlines():
        location_id, borough, zone, service_zone = line.split("|")
        parsed.append((int(location_id), borough, zone, service_zone))
    return tuple(parsed)


def zone_lookup() -> pa.Table:
    """The lookup table with the CSV's header and rows; strings are never nulls, "N/A" stays text."""
    rows = _rows()
    return pa.table(
        {
            "LocationID": pa.array([r[0] for r in rows], pa.int32()),
            "Borough": pa.array([r[1] for r in rows], pa.string()),
            "Zone": pa.array([r[2] for r in rows], pa.string()),
            "service_zone": pa.array([r[3] for r in rows], pa.string()),
        }
    )
