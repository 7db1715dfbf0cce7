"""Named errors of the FHVHV domain: each carries the partition, the file and what to do next.

Every constructor hands all its arguments to ``super().__init__`` so instances pickle cleanly: Dask moves
exceptions from workers back to the flow. No message ever contains a credential.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from partitions.errors import Transient


class TaxiAssetsError(Exception):
    """Root of every error this package raises on purpose; anything else is a bug."""

    exit_code: ClassVar[int] = 1


class ConfigurationError(TaxiAssetsError):
    """A setting or parameter is invalid before any data is touched."""

    exit_code: ClassVar[int] = 2

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(setting, problem)
        self.setting, self.problem = setting, problem

    def __str__(self) -> str:
        return f"{self.setting}: {self.problem}"


class SourceRejected(TaxiAssetsError):
    """A source month cannot be trusted as a whole: nothing of it is written, the previous version stays."""

    exit_code: ClassVar[int] = 3

    def __init__(self, partition: str, path: str, problem: str, remedy: str = "") -> None:
        super().__init__(partition, path, problem, remedy)
        self.partition, self.path, self.problem, self.remedy = partition, path, problem, remedy

    def __str__(self) -> str:
        tail = f"; {self.remedy}" if self.remedy else ""
        return f"{self.partition}: {self.path}: {self.problem}{tail}"


class SourceChanged(TaxiAssetsError):
    """The month's file changed between the plan and the end of its read; nothing of the month was committed.

    S3 and HTTP reads are ranges of the object by name, not pinned to the ETag the plan saw, so a file replaced
    mid-read can hand the reader bytes of both versions. Not a rejection (the new file may be fine) and not
    retried in this run (a retry reads under the same plan): the next run plans the month from the new file.
    """

    exit_code: ClassVar[int] = 3

    def __init__(self, partition: str, path: str, planned: str, now: str) -> None:
        super().__init__(partition, path, planned, now)
        self.partition, self.path, self.planned, self.now = partition, path, planned, now

    def __str__(self) -> str:
        return (
            f"{self.partition}: {self.path} changed while it was read (planned {self.planned}, now {self.now}); "
            "nothing of the month was committed: run again, the next plan takes the new file"
        )


class UnreadableSource(SourceRejected):
    """The file is not a readable parquet file (empty, truncated, an HTML error page, a corrupt page)."""


class SourceSchemaMismatch(SourceRejected):
    """A column is missing or has a type no documented cast can turn into the canonical one."""

    def __init__(self, partition: str, path: str, column: str, found: str, expected: str = "") -> None:
        problem = f"column {column!r} is {found}" + (f", expected {expected}" if expected else "")
        remedy = "add the cast to taxi_assets.model.schema if it is safe, else report the file upstream"
        SourceRejected.__init__(self, partition, path, problem, remedy)
        self.args = (partition, path, column, found, expected)
        self.column, self.found, self.expected = column, found, expected


class UnparseableTimestamp(SourceRejected):
    """A timestamp column published as text holds a value that is not an ISO-8601 timestamp."""

    def __init__(self, partition: str, path: str, column: str, row: int, sample: str) -> None:
        shown = sample if len(sample) <= 60 else sample[:57] + "..."
        problem = f"column {column!r} holds text that is not an ISO-8601 timestamp at row {row}: {shown!r}"
        remedy = (
            "ISO-8601 text (2019-04-01 00:05:00, 2019-04-01T04:05:00Z) is parsed, anything else rejects the month; "
            "replace the file at the source"
        )
        SourceRejected.__init__(self, partition, path, problem, remedy)
        self.args = (partition, path, column, row, sample)
        self.column, self.row, self.sample = column, row, sample


class MisfiledSource(SourceRejected):
    """Most rows of a file fall in another month than the one its name claims: the file, not its rows, is wrong.

    Quarantining them row by row would replace a good month with an empty one while every check passes.
    """

    def __init__(self, partition: str, path: str, outside: int, rows: int, likely: str) -> None:
        problem = (
            f"{outside:,} of {rows:,} rows ({outside / max(rows, 1):.0%}) have a pickup outside {partition}, most "
            f"of them in {likely}: the file looks filed under the wrong month"
        )
        remedy = (
            f"check that the file holds the trips of {partition} (not a copy of {likely}'s) and replace it at the "
            "source; nothing was written, the previous version of the month stays"
        )
        SourceRejected.__init__(self, partition, path, problem, remedy)
        self.args = (partition, path, outside, rows, likely)
        self.outside, self.rows, self.likely = outside, rows, likely


class SourceUnavailable(Transient, TaxiAssetsError):
    """Listing or download failed in a way that may pass on retry (timeout, 5xx, throttling)."""

    exit_code: ClassVar[int] = 3

    def __init__(self, uri: str, detail: str) -> None:
        super().__init__(uri, detail)
        self.uri, self.detail = uri, detail

    def __str__(self) -> str:
        return f"{self.uri}: {self.detail}; retry later or check the endpoint and credentials"


class CheckFailed(TaxiAssetsError):
    """A verification of a written month failed: the data is committed but does not meet its contract."""

    exit_code: ClassVar[int] = 5

    def __init__(self, partition: str, check: str, observed: str, expected: str) -> None:
        super().__init__(partition, check, observed, expected)
        self.partition, self.check, self.observed, self.expected = partition, check, observed, expected

    def __str__(self) -> str:
        return (
            f"{self.partition}: check {self.check!r} failed: observed {self.observed}, expected {self.expected};"
            " the month is planned stale until a run passes its checks"
        )


class PartitionsFailed(TaxiAssetsError):
    """One or more months failed in a run; the others were committed."""

    exit_code: ClassVar[int] = 6

    def __init__(
        self, failures: dict[str, str], rejected: Sequence[str] = (), summary: dict[str, Any] | None = None
    ) -> None:
        super().__init__(failures, tuple(rejected), summary)
        self.failures = failures
        self.rejected = sorted(m for m in rejected if m in failures)  # their files were refused as published
        self.summary = summary  # the run's summary (RunSummary.as_dict()): what `run --json` prints even so

    def __str__(self) -> str:
        lines = "; ".join(f"{k}: {v}" for k, v in sorted(self.failures.items()))
        after = []
        if self.rejected:
            after.append(
                f"{', '.join(self.rejected)} left alone until the file or the code changes "
                "(`--partitions` forces a month)"
            )
        if len(self.rejected) < len(self.failures):
            after.append("the next incremental run retries " + ("the others" if self.rejected else "them"))
        return f"{len(self.failures)} month(s) failed ({lines}); " + "; ".join(after)


class QueryFailed(TaxiAssetsError):
    """An analyst query (``taxi-assets sql``) or a DuckDB view over the sink could not run."""

    exit_code: ClassVar[int] = 2

    def __init__(self, sink: str, detail: str, remedy: str = "") -> None:
        super().__init__(sink, detail, remedy)
        self.sink, self.detail, self.remedy = sink, detail, remedy

    def __str__(self) -> str:
        remedy = self.remedy or "the views are trips, quarantine, checks, partitions and zones (docs/analysts.md)"
        return f"{self.sink}: query failed: {self.detail}; {remedy}"


class ReportFailed(TaxiAssetsError):
    """The quality report notebook could not be executed or rendered; no HTML file was written."""

    exit_code: ClassVar[int] = 7

    def __init__(self, sink: str, output: str, detail: str) -> None:
        super().__init__(sink, output, detail)
        self.sink, self.output, self.detail = sink, output, detail

    def __str__(self) -> str:
        return (
            f"{self.sink}: report {self.output} not written: {self.detail};"
            " check the sink with `taxi-assets status`, then run the report again"
        )


class MonthBusy(TaxiAssetsError):
    """The month's concurrency slot stayed taken by a live run (or refused by the API) for the whole wait.

    ``holder`` names who held it as the guard judged it (run id, pid, host, since; a dead holder is released,
    not waited for); ``detail`` is the API's last answer when taking the slot kept failing.
    """

    exit_code: ClassVar[int] = 4

    def __init__(self, partition: str, limit: str, waited: float, holder: str = "", detail: str = "") -> None:
        super().__init__(partition, limit, waited, holder, detail)
        self.partition, self.limit, self.waited = partition, limit, waited
        self.holder, self.detail = holder, detail

    def __str__(self) -> str:
        if self.detail:
            return (
                f"{self.partition}: could not take the month's concurrency slot {self.limit!r} in {self.waited:g} s; "
                f"the Prefect API kept answering {self.detail}; check the API, then re-run"
            )
        held = f"held by {self.holder}" if self.holder else "held by another run"
        return (
            f"{self.partition}: month busy: concurrency slot {self.limit!r} {held} for the whole "
            f"{self.waited:g} s wait; let it finish, then re-run (TAXI_ASSETS_LOCK_TIMEOUT sets the wait)"
        )


class ApiUnavailable(TaxiAssetsError):
    """The Prefect API a run needs could not be started or reached; nothing was written."""

    exit_code: ClassVar[int] = 8

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(url, detail)
        self.url, self.detail = url, detail

    def __str__(self) -> str:
        where = f"{self.url}: " if self.url else ""
        return (
            f"{where}{self.detail}; nothing was written: run again, or point PREFECT_API_URL at a running "
            "Prefect server (`prefect server start`)"
        )


class ClusterUnavailable(TaxiAssetsError):
    """Nothing answers at the Dask scheduler address the run was given; no month was started, nothing written.

    Said before the flow fans out: left to Dask, each connection attempt waits 30 s and the run ends, after a
    minute, in three tracebacks (the subflow's, the flow's and the CLI's).
    """

    exit_code: ClassVar[int] = 8

    def __init__(self, address: str, detail: str) -> None:
        super().__init__(address, detail)
        self.address, self.detail = address, detail

    def __str__(self) -> str:
        return (
            f"no Dask scheduler answers at {self.address} ({self.detail}); nothing was written: start the scheduler "
            "and its workers (`dask scheduler`, `dask worker ADDRESS`), or run on --cluster local"
        )


class CoiledTokenMissing(ConfigurationError):
    """``cluster="coiled"`` and no Coiled API token where an unattended run can find one: nothing was started.

    Raised before ``coiled.Cluster`` is called: without a token it would try an interactive login (a browser, a
    prompt) and, offline, fail deep in its HTTP client. Holds no fact but the absence, and never a token.
    """

    def __init__(self) -> None:
        super().__init__(
            "cluster=coiled",
            "no Coiled API token found; provide one in DASK_COILED__TOKEN, with `coiled login` (saves coiled.token "
            "in ~/.config/dask/coiled.yaml), or in a Prefect Secret block named by TAXI_ASSETS_COILED_TOKEN_BLOCK; "
            "no cluster was started",
        )
        self.args = ()  # pickles as CoiledTokenMissing()


class SinkUnusable(ConfigurationError):
    """The sink cannot hold the tables: a part of its path is a file, it is read-only, or its bucket is missing.

    Found before anything is written (a path through a file) or at the first write (read-only, no bucket);
    either way no table version changed.
    """

    def __init__(self, sink: str, problem: str) -> None:
        ConfigurationError.__init__(self, "--sink / TAXI_ASSETS_SINK", f"{sink}: {problem}")
        self.args = (sink, problem)
        self.sink = sink


class PrefectHomeUnusable(ConfigurationError):
    """The ephemeral Prefect API could not keep its database where Prefect's settings put it; nothing ran.

    Found before Prefect starts its API: started anyway, the API server fails, Prefect starts another on the
    next port, and so on until its start-up timeout (measured: 28 failed starts and 3.4 minutes before a
    message that names neither the directory nor the cause).
    """

    def __init__(self, home: str, database: str, problem: str) -> None:
        ConfigurationError.__init__(
            self,
            "PREFECT_HOME",
            f"{home}: Prefect's local database {database} cannot be created: {problem}; create the directory, "
            "set PREFECT_HOME to a writable one, or point PREFECT_API_URL at a running Prefect server",
        )
        self.args = (home, database, problem)
        self.home, self.database = home, database


class SinkFull(TaxiAssetsError):
    """A write into the sink ran out of space (or hit the file-size limit) half-way; nothing was committed."""

    exit_code: ClassVar[int] = 9

    def __init__(self, sink: str, detail: str) -> None:
        super().__init__(sink, detail)
        self.sink, self.detail = sink, detail

    def __str__(self) -> str:
        return (
            f"{self.sink}: no space left for the sink's files ({self.detail}); nothing partial was committed and "
            "every month keeps its previous version: free space on the sink's file system (or raise the file-size "
            "limit), then run again"
        )
