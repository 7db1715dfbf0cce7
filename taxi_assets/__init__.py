"""NYC TLC High-Volume FHV trips as a month-partitioned Delta Lake asset."""

from taxi_assets.analytics import duckdb_connect as duckdb_connect
