"""Month facts the generator must reproduce: schema era, published Arrow schema, real row counts.

Everything here is pure and keyed by a "YYYY-MM" month string. Numbers come from the FHVHV spec
(shared/spec/fhvhv.md): eras and null-typed columns from section 1.2, row counts from section 4.1.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, Literal

import numpy as np
import pyarrow as pa

from partitions import keys
from partitions.errors import InvalidPartitionKey
from taxi_assets.model.schema import NULL_TYPED_COLUMNS

Era = Literal["A", "B", "C", "D", "E"]
Layout = Literal["single", "arrow-1Mi", "nonuniform", "daily"]

FIRST_MONTH: Final = "2019-02"  # HVFHS licensing starts; no fhvhv file exists before it

STRING_COLUMNS: Final = (
    "hvfhs_license_num",
    "dispatching_base_num",
    "originating_base_num",
    "shared_request_flag",
    "shared_match_flag",
    "access_a_ride_flag",
    "wav_request_flag",
    "wav_match_flag",
)
TIMESTAMP_COLUMNS: Final = ("request_datetime", "on_scene_datetime", "pickup_datetime", "dropoff_datetime")
LOCATION_COLUMNS: Final = ("PULocationID", "DOLocationID")
# Spec 1.1 file order; the last column exists only from 2025-01.
COLUMNS: Final = (
    *STRING_COLUMNS[:3],
    *TIMESTAMP_COLUMNS,
    *LOCATION_COLUMNS,
    "trip_miles",
    "trip_time",
    "base_passenger_fare",
    "tolls",
    "bcf",
    "sales_tax",
    "congestion_surcharge",
    "airport_fee",
    "tips",
    "driver_pay",
    *STRING_COLUMNS[3:],
    "cbd_congestion_fee",
)

# Spec 4.1 rows per month (S1 and S6 agree wherever both give a month).
REAL_ROWS: Final = MappingProxyType(
    {
        "2019-02": 20159102, "2019-03": 23864598, "2019-04": 21734822, "2019-05": 22329247,
        "2019-06": 21001990, "2019-07": 20303312, "2019-08": 20126113, "2019-09": 20069321,
        "2019-10": 21162290, "2019-11": 21635568, "2019-12": 22243901, "2020-01": 20569368,
        "2020-02": 21725100, "2020-03": 13392928, "2020-04": 4312909, "2020-05": 6089999,
        "2020-06": 7555193, "2020-07": 9958454, "2020-08": 11096852, "2020-09": 12106669,
        "2020-10": 13268411, "2020-11": 11596865, "2020-12": 11637123, "2021-01": 11908468,
        "2021-02": 11613942, "2021-03": 14227393, "2021-04": 14111371, "2021-05": 14719171,
        "2021-06": 14961892, "2021-07": 15027174, "2021-08": 14499696, "2021-09": 14886055,
        "2021-10": 16545356, "2021-11": 16041639, "2021-12": 16054495, "2022-01": 14751591,
        "2022-02": 16019283, "2022-03": 18453548, "2022-04": 17752561, "2022-05": 18157335,
        "2022-06": 17780075, "2022-07": 17464619, "2022-08": 17185687, "2022-09": 17793551,
        "2022-10": 19306090, "2022-11": 18085896, "2022-12": 19665847, "2023-01": 18479031,
        "2023-02": 17960971, "2023-03": 20413539, "2023-04": 19144903, "2023-05": 19847676,
        "2023-06": 19366619, "2023-07": 19132131, "2023-08": 18322150, "2023-09": 19851123,
        "2023-10": 20186330, "2023-11": 19269250, "2023-12": 20516297, "2024-01": 19663930,
        "2024-02": 19359148, "2024-03": 21280788, "2024-04": 19733038, "2024-05": 20704538,
        "2024-06": 20123226, "2024-07": 19182934, "2024-08": 19128392, "2024-09": 19209788,
        "2024-10": 20028282, "2024-11": 19987533, "2024-12": 21068851, "2025-01": 20405666,
        "2025-02": 19339461, "2025-03": 20536879, "2025-04": 19753983, "2025-05": 21091193,
        "2025-06": 19868009, "2025-07": 19653012, "2025-08": 19271461, "2025-09": 19434641,
        "2025-10": 21308701, "2025-11": 20818240, "2025-12": 22108438, "2026-01": 20940373,
        "2026-02": 19875686, "2026-03": 22058358, "2026-04": 20995953, "2026-05": 22125744,
        "2026-06": 20775868,
    }
)  # fmt: skip
# Months after the table: N(20.5 M, 0.9 M), the spread of 2024-2026 (spec 7.1).
UNTABLED_ROWS_MEAN: Final = 20_500_000
UNTABLED_ROWS_SD: Final = 900_000
_UNTABLED_SALT: Final = 0x52_4F_57_53  # keeps the row-count stream apart from the data streams

_ERA_STARTS: Final[tuple[tuple[Era, str], ...]] = (
    ("E", "2025-01"),
    ("D", "2023-02"),
    ("C", "2019-07"),
    ("B", "2019-04"),
    ("A", FIRST_MONTH),
)


def parse_month(month: str) -> tuple[int, int]:
    """Split "YYYY-MM" into (year, month): a partition key (:func:`partitions.keys.parse_month`) of the fhvhv era."""
    try:
        keys.parse_month(month)
    except InvalidPartitionKey:
        raise ValueError(f"month must look like '2024-03', got {month!r}") from None
    if month < FIRST_MONTH:
        raise ValueError(f"no fhvhv data before {FIRST_MONTH}, got {month!r}")
    year, mon = month.split("-")
    return int(year), int(mon)


def month_bounds(month: str) -> tuple[np.datetime64, np.datetime64]:
    """First second of the month and first second of the next month, both naive (NY local)."""
    parse_month(month)
    start, end = keys.month_bounds(month)
    return np.datetime64(start, "s"), np.datetime64(end, "s")


def era_of(month: str) -> Era:
    """The schema era (spec 1.2) a month was published in."""
    parse_month(month)
    return next(name for name, start in _ERA_STARTS if month >= start)


def month_schema(month: str) -> pa.Schema:
    """The exact Arrow schema of the published file, null types and `large_string` included."""
    era = era_of(month)
    modern = era in ("D", "E")
    text = pa.large_string() if modern else pa.string()
    location = pa.int32() if modern else pa.int64()
    null_typed = set(NULL_TYPED_COLUMNS.get(month, ()))
    fields = []
    for name in COLUMNS:
        if name == "cbd_congestion_fee" and era != "E":
            continue
        if name in null_typed:
            kind: pa.DataType = pa.null()
        elif name in STRING_COLUMNS:
            kind = text
        elif name in TIMESTAMP_COLUMNS:
            kind = pa.timestamp("us")
        elif name in LOCATION_COLUMNS:
            kind = location
        elif name == "trip_time":
            kind = pa.int64()
        else:
            kind = pa.float64()
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def real_rows(month: str) -> int:
    """Rows in the real file; for months past the table a stable draw, so reruns agree."""
    year, mon = parse_month(month)
    if month in REAL_ROWS:
        return REAL_ROWS[month]
    rng = np.random.default_rng([_UNTABLED_SALT, year, mon])
    return round(float(rng.normal(UNTABLED_ROWS_MEAN, UNTABLED_ROWS_SD)))


def default_layout(month: str) -> Layout:
    """Old Arrow wrote one giant row group; the 2025 files carry 1 Mi-row groups (spec 4.2, 7.1)."""
    return "arrow-1Mi" if era_of(month) == "E" else "single"


def parquet_format_version(month: str) -> Literal["2.4", "2.6"]:
    """Era E files report format 2.6 (S8); for older ones the spec allows 1.0 or 2.4 and we pick 2.4."""
    return "2.6" if era_of(month) == "E" else "2.4"


def airport_fee_filled(month: str) -> bool:
    """Whether a `double` airport_fee carries values; it is all null before 2022 (spec 1.2, 7.3.12)."""
    return month >= "2022-01" and "airport_fee" not in NULL_TYPED_COLUMNS.get(month, ())
