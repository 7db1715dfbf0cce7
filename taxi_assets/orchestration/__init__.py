"""Prefect flows and Dask clusters: the only layer that imports prefect, prefect_dask, dask, distributed or coiled.

Thin over :mod:`taxi_assets.assets` and :mod:`taxi_assets.checks`; no business rule lives here.
"""
