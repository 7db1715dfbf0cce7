"""Verification of what a run committed: DuckDB checks on the exact table versions, and their Delta record."""
