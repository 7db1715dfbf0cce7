"""Adapters to the systems the pipeline talks to: the source (listing, reading), the sink (Delta writes), DuckDB.

Each module talks to one system and takes its credentials as arguments; none imports Prefect or Dask.
"""
