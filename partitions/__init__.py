"""Generic partitioned-asset engine whose state lives in the Delta transaction log."""
