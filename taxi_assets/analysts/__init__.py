"""What analysts use: DuckDB views over the sink, example queries, and the quality report (notebook ships here)."""
