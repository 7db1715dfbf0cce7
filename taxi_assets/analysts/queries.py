"""Example analyst queries and the quality report's queries, as SQL over :func:`duckdb_connect`'s views.

The five examples are shown verbatim in ``docs/analysts.md`` (a test keeps the two in step) and run by the
tests. Company names come from ``hvfhs_license_num`` (TLC data dictionary): HV0002 Juno, HV0003 Uber,
HV0004 Via, HV0005 Lyft. Every query filters or groups on ``month`` where it can: that column prunes files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from partitions.keys import parse_month
from taxi_assets.model.schema import COLUMN_NAMES

COMPANIES: Final = {"HV0002": "Juno", "HV0003": "Uber", "HV0004": "Via", "HV0005": "Lyft"}


@dataclass(frozen=True, slots=True)
class ExampleQuery:
    name: str
    title: str
    sql: str


TRIPS_PER_DAY_BY_COMPANY: Final = ExampleQuery(
    "trips_per_day_by_company",
    "Trips per day by company",
    """\
SELECT CAST(pickup_datetime AS DATE) AS day,
       CASE hvfhs_license_num
           WHEN 'HV0002' THEN 'Juno' WHEN 'HV0003' THEN 'Uber'
           WHEN 'HV0004' THEN 'Via' WHEN 'HV0005' THEN 'Lyft'
           ELSE hvfhs_license_num
       END AS company,
       count(*) AS trips
FROM trips
WHERE month = '2019-02'
GROUP BY day, company
ORDER BY day, company""",
)

UBER_LYFT_SHARE_BY_MONTH: Final = ExampleQuery(
    "uber_lyft_share_by_month",
    "Uber vs Lyft share of all trips, by month",
    """\
WITH per_company AS (
    SELECT month, hvfhs_license_num, count(*) AS trips
    FROM trips
    GROUP BY month, hvfhs_license_num
)
SELECT month,
       sum(trips) FILTER (WHERE hvfhs_license_num = 'HV0003') AS uber_trips,
       sum(trips) FILTER (WHERE hvfhs_license_num = 'HV0005') AS lyft_trips,
       round(100 * sum(trips) FILTER (WHERE hvfhs_license_num = 'HV0003') / sum(trips), 1) AS uber_share_pct,
       round(100 * sum(trips) FILTER (WHERE hvfhs_license_num = 'HV0005') / sum(trips), 1) AS lyft_share_pct
FROM per_company
GROUP BY month
ORDER BY month""",
)

FARE_PER_MILE_BY_BOROUGH_PAIR: Final = ExampleQuery(
    "fare_per_mile_by_borough_pair",
    "Median base fare per mile by pickup and drop-off borough",
    """\
SELECT pu.Borough AS pickup_borough,
       dz.Borough AS dropoff_borough,
       count(*) AS trips,
       round(median(t.base_passenger_fare / t.trip_miles), 2) AS median_fare_per_mile
FROM trips AS t
JOIN zones AS pu ON pu.LocationID = t.PULocationID
JOIN zones AS dz ON dz.LocationID = t.DOLocationID
WHERE t.trip_miles > 0
GROUP BY pickup_borough, dropoff_borough
ORDER BY trips DESC""",
)

AIRPORT_TRIPS: Final = ExampleQuery(
    "airport_trips",
    "Trips to and from the airports (JFK, LaGuardia, Newark), by month",
    """\
SELECT t.month,
       z.Zone AS airport,
       count(*) FILTER (WHERE t.PULocationID = z.LocationID) AS pickups,
       count(*) FILTER (WHERE t.DOLocationID = z.LocationID) AS dropoffs,
       round(avg(t.base_passenger_fare), 2) AS avg_base_fare,
       round(avg(t.trip_miles), 1) AS avg_miles
FROM trips AS t
JOIN zones AS z ON z.LocationID IN (t.PULocationID, t.DOLocationID)
WHERE z.service_zone IN ('Airports', 'EWR')
GROUP BY t.month, airport
ORDER BY t.month, airport""",
)

TIPPING_RATE: Final = ExampleQuery(
    "tipping_rate",
    "Tipping rate by company and month",
    """\
SELECT month,
       CASE hvfhs_license_num
           WHEN 'HV0002' THEN 'Juno' WHEN 'HV0003' THEN 'Uber'
           WHEN 'HV0004' THEN 'Via' WHEN 'HV0005' THEN 'Lyft'
           ELSE hvfhs_license_num
       END AS company,
       count(*) AS trips,
       round(100 * avg(CASE WHEN tips > 0 THEN 1 ELSE 0 END), 1) AS tipped_pct,
       round(100 * sum(tips) / nullif(sum(base_passenger_fare), 0), 1) AS tips_pct_of_fare
FROM trips
GROUP BY month, company
ORDER BY month, company""",
)

EXAMPLES: Final = (
    TRIPS_PER_DAY_BY_COMPANY,
    UBER_LYFT_SHARE_BY_MONTH,
    FARE_PER_MILE_BY_BOROUGH_PAIR,
    AIRPORT_TRIPS,
    TIPPING_RATE,
)

# -- the quality report ---------------------------------------------------------------------------------

_COMPANY: Final = "CASE hvfhs_license_num " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in COMPANIES.items())
# Histograms are binned in DuckDB (a month is ~20 M rows): (column expression, bin width, upper limit, label).
HISTOGRAMS: Final = (
    ("base_passenger_fare", 2.5, 150.0, "Base passenger fare (USD)"),
    ("trip_miles", 0.5, 40.0, "Trip distance (miles)"),
    ("trip_time / 60.0", 2.0, 120.0, "Trip duration (minutes)"),
)


def month_filter(months: Sequence[str] | None, *, column: str = "month") -> str:
    """A ``WHERE`` condition on ``column``: literal keys (validated first) so DuckDB prunes partitions."""
    if not months:
        return "TRUE"
    return f"{column} IN (" + ", ".join(f"'{parse_month(m)}'" for m in months) + ")"


def rows_by_month(months: Sequence[str] | None) -> str:
    return f"""
        SELECT partition AS month, status, rows_source, rows AS rows_clean, rows_quarantined,
               round(100.0 * rows_quarantined / nullif(rows_source, 0), 3) AS quarantined_pct,
               table_version, finished_at
        FROM partitions WHERE {month_filter(months, column="partition")} ORDER BY month"""


def quarantine_by_rule(months: Sequence[str] | None) -> str:
    """Quarantine rate per rule and month, as a share of the month's source rows (a row may break several)."""
    return f"""
        WITH broken AS (
            SELECT month, unnest(rule) AS rule FROM quarantine WHERE {month_filter(months)}
        )
        SELECT b.month, b.rule, count(*) AS rows,
               round(100.0 * count(*) / any_value(p.rows_source), 4) AS pct_of_source
        FROM broken AS b LEFT JOIN partitions AS p ON p.partition = b.month
        GROUP BY b.month, b.rule ORDER BY b.month, rows DESC"""


def null_rates(months: Sequence[str] | None) -> str:
    """Percent null per canonical column and month."""
    rates = ", ".join(f'round(100.0 - 100.0 * count("{c}") / count(*), 3) AS "{c}"' for c in COLUMN_NAMES)
    return (
        f"SELECT month, count(*) AS rows, {rates} FROM trips WHERE {month_filter(months)} GROUP BY month ORDER BY month"
    )


def histogram(expr: str, width: float, limit: float, months: Sequence[str] | None) -> str:
    """Counts per bin of ``expr`` in ``[0, limit)``; values at or above ``limit`` land in the last bin."""
    return f"""
        SELECT least(floor(({expr}) / {width}) * {width}, {limit - width}) AS bin, count(*) AS trips
        FROM trips WHERE {month_filter(months)} AND ({expr}) >= 0
        GROUP BY bin ORDER BY bin"""


def trips_per_day(months: Sequence[str] | None) -> str:
    return f"""
        SELECT CAST(pickup_datetime AS DATE) AS day, {_COMPANY} ELSE hvfhs_license_num END AS company,
               count(*) AS trips
        FROM trips WHERE {month_filter(months)} GROUP BY day, company ORDER BY day, company"""


def latest_checks(months: Sequence[str] | None) -> str:
    """The newest result of every check of every month (the table keeps them all).

    Newest by check time, then by the table version checked: runs seconds apart on one month must not tie
    (check times were once stamped to the second)."""
    return f"""
        SELECT partition AS month, "check", passed, observed, expected, table_version, run_id, checked_at
        FROM checks WHERE {month_filter(months, column="partition")}
        QUALIFY row_number() OVER (PARTITION BY partition, "check" ORDER BY checked_at DESC, table_version DESC) = 1
        ORDER BY month, "check" """


def company_shares(months: Sequence[str] | None) -> str:
    """Trips per month and company, with the company's share of the month (0..100)."""
    return f"""
        SELECT month, {_COMPANY} ELSE hvfhs_license_num END AS company, count(*) AS trips,
               100.0 * count(*) / sum(count(*)) OVER (PARTITION BY month) AS share_pct
        FROM trips WHERE {month_filter(months)} GROUP BY month, company ORDER BY month, company"""


def quarantine_examples(months: Sequence[str] | None, per_rule: int = 3) -> str:
    """A few quarantined rows per rule (the first by month and source row), with the columns rules look at."""
    return f"""
        WITH broken AS (
            SELECT unnest(rule) AS broken_rule, * FROM quarantine WHERE {month_filter(months)}
        )
        SELECT broken_rule AS rule, month, source_row, hvfhs_license_num, pickup_datetime, dropoff_datetime,
               PULocationID, DOLocationID, trip_miles, trip_time, base_passenger_fare, driver_pay, reason
        FROM broken
        QUALIFY row_number() OVER (PARTITION BY broken_rule ORDER BY month, source_row) <= {int(per_rule)}
        ORDER BY rule, month, source_row"""


# Distributions per month: (column expression, label). Quantiles, not pooled histograms: one line per statistic
# over the months shows a month that drifts, and stays readable for 80 months.
DISTRIBUTIONS: Final = (
    ("base_passenger_fare", "Base passenger fare (USD)"),
    ("trip_miles", "Trip distance (miles)"),
    ("trip_time / 60.0", "Trip duration (minutes)"),
)
QUANTILES: Final = (0.05, 0.25, 0.5, 0.75, 0.95)


def quantiles_by_month(expr: str, months: Sequence[str] | None) -> str:
    """The 5th, 25th, 50th, 75th and 95th percentile of ``expr`` per month (approximate: t-digest, fast)."""
    cols = ", ".join(f"approx_quantile({expr}, {q}) AS p{round(q * 100):02d}" for q in QUANTILES)
    return f"SELECT month, {cols} FROM trips WHERE {month_filter(months)} GROUP BY month ORDER BY month"
