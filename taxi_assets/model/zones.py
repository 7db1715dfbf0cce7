"""The TLC zone lookup (LocationID -> borough, zone, service zone) as production data, not test data.

The daily summary names boroughs from it and the analysts' ``zones`` view joins it; the rows are the TLC's CSV
(:mod:`taxi_assets.model._zone_data`), parsed once per process.
"""

from __future__ import annotations

from functools import cache
from typing import Final

import pyarrow as pa

from taxi_assets.model._zone_data import ZONE_ROWS

ZONE_COUNT: Final = 265


UNKNOWN_ZONE: Final = 264


OUTSIDE_NYC_ZONE: Final = 265


ZONE_SCHEMA: Final = pa.schema(
    [("LocationID", pa.int32()), ("Borough", pa.string()), ("Zone", pa.string()), ("service_zone", pa.string())]
)


@cache
def zone_rows() -> tuple[tuple[int, str, str, str], ...]:
    """The lookup's rows as Python tuples (no Arrow conversion: pyarrow imports pandas to build from lists)."""
    parsed = []
    for line in ZONE_ROWS.strip().splitlines():
        location_id, borough, zone, service_zone = line.split("|")
        parsed.append((int(location_id), borough, zone, service_zone))
    return tuple(parsed)


def zone_lookup() -> pa.Table:
    """The lookup table with the CSV's header and rows; strings are never nulls, "N/A" stays text."""
    rows = zone_rows()
    columns = [pa.array([r[i] for r in rows], field.type) for i, field in enumerate(ZONE_SCHEMA)]
    return pa.Table.from_arrays(columns, schema=ZONE_SCHEMA)
