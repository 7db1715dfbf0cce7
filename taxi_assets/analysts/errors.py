"""Named errors of the analysts' layer (``duckdb_connect``, ``taxi-assets sql``, the report).

They subclass the package's roots (:class:`~taxi_assets.errors.ConfigurationError`,
:class:`~taxi_assets.errors.QueryFailed`), so ``cli.main`` prints them as one line with exit code 2, and they keep
every constructor argument in ``args`` (picklable, like the others). No message contains a credential.
"""

from __future__ import annotations

from collections.abc import Sequence

from taxi_assets.errors import ConfigurationError, QueryFailed


class NoTablesInSink(ConfigurationError):
    """The sink holds none of the pipeline's Delta tables: a typo in ``--sink`` or nothing was run yet.

    Raised instead of empty views, which would answer ``count(*) = 0`` and look like a valid, empty lake.
    """

    def __init__(self, sink: str, looked_for: Sequence[str]) -> None:
        names = ", ".join(looked_for)
        super().__init__(
            sink,
            f"no Delta table here (looked for {names}); check --sink / TAXI_ASSETS_SINK for a typo, "
            "or materialize months first with `taxi-assets run`",
        )
        self.args = (sink, tuple(looked_for))
        self.sink, self.looked_for = sink, tuple(looked_for)


class VersionNotFound(QueryFailed):
    """``version=N`` names no version of the ``trips`` table."""

    def __init__(self, sink: str, version: int, newest: int) -> None:
        super().__init__(sink, f"trips has no version {version}", f"pick a version from 0 to {newest}")
        self.args = (sink, version, newest)
        self.version, self.newest = version, newest


class QueryRefused(QueryFailed):
    """A statement that would write, change settings or touch files outside the sink's tables: refused, not run."""

    def __str__(self) -> str:
        remedy = self.remedy or "taxi-assets sql only reads the sink's views (SELECT, WITH, DESCRIBE, EXPLAIN)"
        return f"{self.sink}: query refused: {self.detail}; {remedy}"


class ReportNotWritable(ConfigurationError):
    """``--output`` names a directory, or a place where no file can be written; nothing was left there."""

    def __init__(self, output: str, problem: str) -> None:
        super().__init__(
            output, f"the report cannot be written here: {problem}; pass --output a file path in a writable directory"
        )
        self.args = (output, problem)
        self.output, self.reason = output, problem
