"""TODO docstring."""

from __future__ import annotations

from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from taxi_assets.model.batch_sql import BatchSQL
from taxi_assets.model.schema import PARTITION_COLUMN
from taxi_assets.model.zones import zone_lookup

SUMMARY_VERSION: Final = "daily-summary-1"  # bump when the meaning of a column changes


COMPANIES: Final = {"HV0002": "Juno", "HV0003": "Uber", "HV0004": "Via", "HV0005": "Lyft"}


# Partial sums of many batches into one partial (also what bounds the partials held for a long month).
MERGE_SQL: Final = """
SELECT day, license, pickup, dropoff, CAST(sum(trips) AS BIGINT) AS trips, sum(fare) AS fare, sum(tips) AS tips,
    sum(miles) AS miles
FROM partials
GROUP BY ALL
"""


# The keys named: company from the licence, boroughs from their codes.
FINAL_SQL: Final = """
SELECT
    p.day,
    coalesce(c.company, p.license) AS company,
    coalesce(pb.borough, 'Unknown') AS pickup_borough,
    coalesce(db.borough, 'Unknown') AS dropoff_borough,
    CAST(sum(p.trips) AS BIGINT) AS trips,
    sum(p.fare) AS fare,
    sum(p.tips) AS tips,
    sum(p.miles) AS miles
FROM partials AS p
LEFT JOIN companies AS c ON p.license = c.license
LEFT JOIN boroughs AS pb ON p.pickup = pb.code
LEFT JOIN boroughs AS db ON p.dropoff = db.code
GROUP BY ALL
ORDER BY ALL
"""


# The columns a summary reads from ``trips``, in the order StreamSummary takes them.
TRIPS_COLUMNS: Final = (
    "pickup_datetime",
    "hvfhs_license_num",
    "PULocationID",
    "DOLocationID",
    "base_passenger_fare",
    "tips",
    "trip_miles",
)


# Per batch: numpy sums of the clean rows on one dense integer key (day, licence, pickup and dropoff borough);
# bump when that changes. A DuckDB hash aggregation per batch cost several times the CPU and kept a hash table
# per batch (figures: docs/performance.md, "The month task writes the month's daily_summary").
PARTIAL_METHOD: Final = "numpy-bincount-1"


LOCATION_CODES: Final = 1 << 16  # location IDs looked up directly; any other ID is a zone the lookup lacks


MAX_PARTIALS: Final = 32  # partials held before they are merged: ~7 k rows each, whatever the month's size


def summary_schema() -> pa.Schema:
    """Columns of ``<sink>/daily_summary``: the grouping keys, the measures, then the partition column."""
    return pa.schema(
        [
            pa.field("day", pa.date32(), nullable=False),
            pa.field("company", pa.string(), nullable=False),
            pa.field("pickup_borough", pa.string(), nullable=False),
            pa.field("dropoff_borough", pa.string(), nullable=False),
            pa.field("trips", pa.int64(), nullable=False),
            pa.field("fare", pa.float64()),
            pa.field("tips", pa.float64()),
            pa.field("miles", pa.float64()),
            pa.field(PARTITION_COLUMN, pa.string(), nullable=False),
        ]
    )


class StreamSummary(BatchSQL):
    """The summary of one month from a stream of ``trips`` batches: numpy per batch, DuckDB across batches.

    Each batch's clean rows are summed on one dense key (day x licence x pickup borough x dropoff borough, a few
    thousand cells) with ``numpy.bincount`` on the month task's reading thread, no hash table (its cost:
    docs/performance.md). The partials (one row per cell in use) are merged and named by DuckDB
    (:data:`MERGE_SQL`, :data:`FINAL_SQL`). Batches carry :data:`TRIPS_COLUMNS` at least (the writer's canonical
    batches, or a scan of ``trips``), strings plain or dictionary-encoded. Memory is bounded by
    :data:`MAX_PARTIALS`, not by the month.
    """

    def __init__(self, month: str) -> None:
        super().__init__("StreamSummary")
        self.month = month
        self.rows = 0
        zones = zone_lookup()
        names = pc.dictionary_encode(zones["Borough"].combine_chunks())
        self._null_borough = len(names.dictionary)  # the code of "no borough": a zone the lookup lacks, or null
        self._borough_of = np.full(LOCATION_CODES, self._null_borough, dtype=np.intp)
        self._borough_of[zones["LocationID"].to_numpy()] = names.indices.to_numpy(zero_copy_only=False)
        self._boroughs = pa.table(
            {"code": pa.array(range(len(names.dictionary)), pa.int16()), "borough": names.dictionary}
        )
        self._partials: list[pa.Table] = []

    def _borough_codes(self, location_ids: pa.Array) -> np.ndarray:
        """Each row's borough code; :attr:`_null_borough` for a null ID or one the zone lookup does not have."""
        ids = location_ids.fill_null(0).to_numpy(zero_copy_only=False)  # 0 is no zone
        if len(ids) and (ids.min() < 0 or ids.max() >= LOCATION_CODES):
            ids = np.where((ids >= 0) & (ids < LOCATION_CODES), ids, 0)
        codes: np.ndarray = self._borough_of[ids]
        return codes

    def add(self, batch: pa.RecordBatch, keep: pa.BooleanArray | None = None) -> None:
        """Sum the rows of ``batch`` where ``keep`` is true (every row when ``keep`` is None)."""
        kept = np.ones(batch.num_rows, dtype=bool) if keep is None else keep.to_numpy(zero_copy_only=False)
        if not kept.any():
            return
        # Quarantined rows may lack a pickup or lie years away: only the kept rows' days span the key.
        pickup = batch.column("pickup_datetime")
        days = pc.cast(pickup, pa.date32()).cast(pa.int32()).fill_null(0).to_numpy(zero_copy_only=False)
        if pickup.null_count and not pickup.is_valid().to_numpy(zero_copy_only=False)[kept].all():
            raise ValueError(f"{self.month}: trips rows without pickup_datetime to summarize (a rule quarantines them)")
        licenses = batch.column("hvfhs_license_num")
        if not pa.types.is_dictionary(licenses.type):
            licenses = pc.dictionary_encode(licenses)
        n_licenses = len(licenses.dictionary) + 1  # the last: a null licence
        kept_days = days[kept] if keep is not None else days
        first_day, n_boroughs = int(kept_days.min()), self._null_borough + 1
        cells = int(kept_days.max() - first_day + 1) * n_licenses * n_boroughs * n_boroughs
        key = (days - first_day).astype(np.intp)
        key *= n_licenses
        key += licenses.indices.fill_null(n_licenses - 1).to_numpy(zero_copy_only=False)
        key *= n_boroughs
        key += self._borough_codes(batch.column("PULocationID"))
        key *= n_boroughs
        key += self._borough_codes(batch.column("DOLocationID"))
        if keep is not None and keep.false_count:
            key = np.where(kept, key, cells)  # dropped rows: one cell past the end
        counts = np.bincount(key, minlength=cells + 1)[:cells]
        used = np.flatnonzero(counts)
        sums = {name: self._sums(batch.column(column), key, cells, used) for name, column in _MEASURES}
        day, rest = np.divmod(used, n_licenses * n_boroughs * n_boroughs)
        license_code, rest = np.divmod(rest, n_boroughs * n_boroughs)
        pickup_code, dropoff_code = np.divmod(rest, n_boroughs)
        license_names = pa.concat_arrays([licenses.dictionary.cast(pa.string()), pa.nulls(1, pa.string())])
        self._partials.append(
            pa.table(
                {
                    "day": pa.array(day + first_day, pa.int32()).cast(pa.date32()),
                    "license": license_names.take(pa.array(license_code)),
                    "pickup": self._codes(pickup_code),
                    "dropoff": self._codes(dropoff_code),
                    "trips": pa.array(counts[used], pa.int64()),
                    **sums,
                }
            )
        )
        self.rows += int(counts.sum())
        if len(self._partials) >= MAX_PARTIALS:
            self._partials = [self.table(MERGE_SQL, partials=pa.concat_tables(self._partials))]

    def _codes(self, codes: np.ndarray) -> pa.Array:
        return pa.array(codes.astype(np.int16), mask=codes == self._null_borough)

    @staticmethod
    def _sums(values: pa.Array, key: np.ndarray, cells: int, used: np.ndarray) -> pa.Array:
        """Per cell in use, the sum of ``values``; null where every value is null (SQL's ``sum``)."""
        total = np.bincount(key, weights=values.fill_null(0).to_numpy(zero_copy_only=False), minlength=cells + 1)
        if not values.null_count:
            return pa.array(total[used], pa.float64())
        valid = values.is_valid().to_numpy(zero_copy_only=False)
        present = np.bincount(key, weights=valid, minlength=cells + 1)[used] > 0
        return pa.array(total[used], pa.float64(), mask=~present)

    def result(self) -> pa.Table:
        """The month's summary rows on :func:`summary_schema`, sorted by day, company and boroughs."""
        partials = pa.concat_tables(self._partials) if self._partials else pa.Table.from_batches([], _PARTIAL_SCHEMA)
        companies = pa.table({"license": list(COMPANIES), "company": list(COMPANIES.values())})
        named = self.table(FINAL_SQL, partials=partials, companies=companies, boroughs=self._boroughs)
        month_column = pa.array([self.month] * named.num_rows, pa.string())
        return named.append_column(PARTITION_COLUMN, month_column).cast(summary_schema())


_MEASURES: Final = (("fare", "base_passenger_fare"), ("tips", "tips"), ("miles", "trip_miles"))


_PARTIAL_SCHEMA: Final = pa.schema(
    [
        ("day", pa.date32()),
        ("license", pa.string()),
        ("pickup", pa.int16()),
        ("dropoff", pa.int16()),
        ("trips", pa.int64()),
        ("fare", pa.float64()),
        ("tips", pa.float64()),
        ("miles", pa.float64()),
    ]
)
