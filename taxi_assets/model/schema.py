"""The canonical FHVHV schema, declared once: what every month of the ``trips`` table looks like.

The TLC files drift between months (null-typed columns, int64/int32 IDs, string/large_string, a 25th column
from 2025-01: ``../shared/spec/fhvhv.md`` section 1); :mod:`taxi_assets.model.casts` maps each onto this. The writer,
the checks, the docs and the report all read :data:`COLUMNS`, and the schema text and :data:`SCHEMA_VERSION` are
hashed into the asset's code version (``taxi_assets.model.code_version``), so a change here replans every month.

Type choices, and why:

* strings are ``string`` (not ``large_string``): no value is near 2 GiB per batch, and one type for every month
  is what lets months be read together (spec 1.4);
* zone IDs are ``int32``: codes 1..265, the type the TLC itself moved to in 2023-02;
* ``trip_time`` is ``int64`` whole seconds, as published in every month;
* money and miles stay ``float64``: it is the published type, so the copy is bit-for-bit the source value.
  ``float32`` (the seed's choice) keeps only ~7 significant digits: ``12.55`` becomes ``12.5500001907``,
  sums over a month drift by dollars and no longer reconcile with the source. ``decimal128(9, 2)`` would be
  exact only after a rounding step the source never made (its doubles are not exact cents either), costs a
  slower, less widely supported type, and Parquet's dictionary + compression make ``float64`` cost little
  (most money columns hold a few thousand distinct values per row group);
* Y/N flags are ``bool``; any other value (``' '``, ``'y'``, ...) becomes null and is counted;
* timestamps are ``timestamp[us]`` without a time zone: naive New York wall time as published (Delta
  ``timestamp_ntz``), whole seconds in practice;
* ``cbd_congestion_fee`` is null, never 0, in months published before the column existed (2025-01);
* ``month`` (``YYYY-MM``) is the partition column; Delta keeps it in the log, not in the data files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Final, Literal

import pyarrow as pa

Kind = Literal["string", "timestamp", "id", "float", "seconds", "flag"]

SCHEMA_VERSION: Final = "fhvhv-schema-1"  # bump on any change of COLUMNS or the two schemas
PARTITION_COLUMN: Final = "month"
# Spec 1.2: months whose published Arrow schema has a `null`-typed column (every value null). The synthetic months
# publish them so, and the quality report expects those nulls.
NULL_TYPED_COLUMNS: Final = MappingProxyType(
    {
        "2019-02": ("airport_fee", "wav_match_flag"),
        "2019-03": ("airport_fee", "wav_match_flag"),
        "2019-04": ("airport_fee",),
        "2019-05": ("airport_fee",),
        "2019-06": ("airport_fee",),
        "2020-04": ("airport_fee",),
        "2020-10": ("airport_fee",),
    }
)
ZONE_MIN: Final = 1
ZONE_MAX: Final = 265

STRING_DICTIONARY: Final = pa.dictionary(pa.int32(), pa.string())
_ARROW_TYPE: Final[dict[Kind, pa.DataType]] = {
    "string": pa.string(),
    "timestamp": pa.timestamp("us"),
    "id": pa.int32(),
    "float": pa.float64(),
    "seconds": pa.int64(),
    "flag": pa.bool_(),
}


@dataclass(frozen=True, slots=True)
class Column:
    """One canonical column: its type, whether a trip is unusable without it, and what it means."""

    name: str
    kind: Kind
    required: bool
    description: str
    may_be_absent: bool = False  # absent from older files by design (filled with nulls, never zeros)

    @property
    def arrow_type(self) -> pa.DataType:
        return _ARROW_TYPE[self.kind]


COLUMNS: Final[tuple[Column, ...]] = (
    Column(
        "hvfhs_license_num",
        "string",
        True,
        "HVFHS licence: HV0002 Juno, HV0003 Uber, HV0004 Via, HV0005 Lyft",
    ),
    Column("dispatching_base_num", "string", True, "TLC base licence that dispatched the trip (B + 5 digits)"),
    Column("originating_base_num", "string", False, "Base that received the request; null for most Lyft trips"),
    Column("request_datetime", "timestamp", True, "When the passenger requested the ride (New York local time)"),
    Column("on_scene_datetime", "timestamp", False, "When the driver arrived (Uber only in practice)"),
    Column("pickup_datetime", "timestamp", True, "Trip start (New York local time)"),
    Column("dropoff_datetime", "timestamp", True, "Trip end (New York local time)"),
    Column("PULocationID", "id", True, "TLC taxi zone of the pickup (1..265; 264/265 unknown / outside NYC)"),
    Column("DOLocationID", "id", True, "TLC taxi zone of the drop-off (1..265)"),
    Column("trip_miles", "float", True, "Miles driven with the passenger"),
    Column("trip_time", "seconds", True, "Seconds with the passenger"),
    Column("base_passenger_fare", "float", True, "Fare before tolls, tips, taxes and fees (USD)"),
    Column("tolls", "float", True, "Tolls paid on the trip (USD)"),
    Column("bcf", "float", True, "Black Car Fund contribution (USD)"),
    Column("sales_tax", "float", True, "NYS sales tax (USD)"),
    Column("congestion_surcharge", "float", True, "NYS congestion surcharge (USD)"),
    Column("airport_fee", "float", False, "Airport fee (USD); null in months before it was charged"),
    Column("tips", "float", True, "Tips (USD)"),
    Column("driver_pay", "float", True, "Driver pay, excluding tolls and tips (USD)"),
    Column("shared_request_flag", "flag", False, "Passenger asked for a shared ride (Y/N; other values null)"),
    Column("shared_match_flag", "flag", False, "Passenger shared the vehicle (Y/N; other values null)"),
    Column("access_a_ride_flag", "flag", False, "Administered for the MTA Access-a-Ride (Y/N; ' ' null)"),
    Column("wav_request_flag", "flag", False, "Wheelchair-accessible vehicle requested (Y/N)"),
    Column("wav_match_flag", "flag", False, "Trip served by a wheelchair-accessible vehicle (Y/N)"),
    Column(
        "cbd_congestion_fee",
        "float",
        False,
        "Manhattan CBD congestion fee (USD); null before 2025",
        may_be_absent=True,
    ),
)

COLUMN_NAMES: Final = tuple(c.name for c in COLUMNS)
REQUIRED: Final = tuple(c.name for c in COLUMNS if c.required)
BY_LOWER_NAME: Final = {c.name.lower(): c for c in COLUMNS}


@cache
def trips_schema() -> pa.Schema:
    """The clean ``trips`` table: canonical columns in file order, then the partition column."""
    fields = [pa.field(c.name, c.arrow_type, nullable=True, metadata={"description": c.description}) for c in COLUMNS]
    return pa.schema([*fields, pa.field(PARTITION_COLUMN, pa.string(), nullable=False)])


@cache
def trips_batch_schema() -> pa.Schema:
    """:func:`trips_schema` as the streaming transform holds it: the string columns as ``dictionary<int32, string>``.

    The same values, another memory layout: the reader takes the files' own Parquet dictionaries instead of
    building a string per row, and the writer writes the indices instead of hashing every string again
    (measured: -75 % read and -20 % write time on these columns, -15 bytes per row held). Data files are
    written without the Arrow schema, so they, the Delta table and every reader see plain ``string``.
    """
    fields = [
        f.with_type(STRING_DICTIONARY) if pa.types.is_string(f.type) and f.name != PARTITION_COLUMN else f
        for f in trips_schema()
    ]
    return pa.schema(fields)


@cache
def quarantine_schema() -> pa.Schema:
    """The ``quarantine`` table: the trip as cast, where it sat in the source, and every rule it breaks."""
    extra = [
        pa.field("source_row", pa.int64(), nullable=False),
        pa.field("rule", pa.list_(pa.string()), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
    return pa.schema([*trips_schema(), *extra])


def describe() -> Sequence[tuple[str, str, bool, str]]:
    """(name, Arrow type, required, description) rows, for the README and the report."""
    return [(c.name, str(c.arrow_type), c.required, c.description) for c in COLUMNS]
