"""What changed when a month was published again: the recorded audit, or the two ``trips`` versions compared.

For each re-written month (a success after an earlier success, :func:`health.publication_history`): when the new
success was a re-publication built by this version of the pipeline, its record already keeps the audit
(``fhvhv.republished.*``, taken at write time by :mod:`taxi_assets.checks.republication`) and it is read from the
commit. Otherwise (a re-run, a code change, a month written before the audit was recorded) the month's rows at
the previous version and at the new one are read back (``delta_scan(..., version => n)`` with the month filter,
so only that month's files of each version are opened) and compared with the same functions: rows per company,
the table's columns (added, removed, retyped between the two table schemas), the source's extra columns the
records kept, and the trips by identity digest, as multisets: how many of the new version's trips were not in
the old one (new) and how many of the old one's are no longer there (gone). A re-run of the same source shows 0
and 0; a re-published file that only added trips shows new > 0 and gone = 0.

The cost of the time-travel path is two scans of the month per re-write, which is why the report audits only
the months listed; a recorded audit costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from deltalake import DeltaTable

from partitions.records import EXTRA_PREFIX
from taxi_assets.checks.republication import (
    EXTRA_COLUMNS,
    Audit,
    column_change_parts,
    company_deltas,
    digest_changes,
)
from taxi_assets.io.duckdb import open_connection, register_table
from taxi_assets.model.schema import trips_schema

_EXTRA = EXTRA_PREFIX + EXTRA_COLUMNS


def republications(history: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(previous success, new success) pairs of the same month, oldest first."""
    last: dict[str, Mapping[str, Any]] = {}
    pairs = []
    for row in history:
        if row["status"] != "success":
            continue
        if (before := last.get(row["month"])) is not None:
            pairs.append((before, row))
        last[row["month"]] = row
    return pairs


def audit_republications(
    trips_uri: str,
    history: Sequence[Mapping[str, Any]],
    *,
    storage_options: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One row per re-publication: month, versions, row delta, per-company deltas, column changes, new/gone trips."""
    pairs = republications(history)
    if not pairs:
        return []
    opts = dict(storage_options or {}) or None
    commits = {c["version"]: c for c in DeltaTable(trips_uri, storage_options=opts).history()}
    out = []
    with open_connection(storage_options=opts, scope=trips_uri.rsplit("/", 1)[0]) as con:
        for before, after in pairs:
            old, new = int(before["version"]), int(after["version"])
            month = str(after["month"])
            row = {"month": month, "versions": f"{old} -> {new}", "cause": after["cause"]}
            recorded = Audit.from_extra(_extras(commits.get(new, {})))
            if recorded is not None:
                out.append({**row, **_recorded(recorded), "audit": "recorded"})
                continue
            for version in (old, new):
                register_table(
                    con, f"v{version}", trips_uri, schema=trips_schema(), version=version, storage_options=opts
                )
            digests = digest_changes(con, f"v{old}", f"v{new}", month)
            out.append(
                {
                    **row,
                    "row delta": (after["rows"] or 0) - (before["rows"] or 0),
                    "by company": company_deltas(con, f"v{old}", f"v{new}", month),
                    "columns": _column_changes(trips_uri, old, new, opts, commits),
                    "new trips": digests.new_trips,
                    "new %": 100.0 * digests.new_trips / digests.new_rows if digests.new_rows else 0.0,
                    "gone trips": digests.gone_trips,
                    "gone %": 100.0 * digests.gone_trips / digests.old_rows if digests.old_rows else 0.0,
                    "audit": "time travel",
                }
            )
    return out


def _extras(commit: Mapping[str, Any]) -> dict[str, str]:
    return {k[len(EXTRA_PREFIX) :]: str(v) for k, v in commit.items() if k.startswith(EXTRA_PREFIX)}


def _recorded(audit: Audit) -> dict[str, Any]:
    return {
        "row delta": audit.row_delta,
        "by company": audit.by_company,
        "columns": audit.columns,
        "new trips": audit.trips_new,
        "new %": audit.new_share,
        "gone trips": audit.trips_gone,
        "gone %": audit.gone_share,
    }


def _column_changes(
    uri: str, old: int, new: int, opts: dict[str, str] | None, commits: Mapping[int, Mapping[str, Any]]
) -> str:
    before = {f.name: str(f.type) for f in DeltaTable(uri, version=old, storage_options=opts).schema().fields}
    after = {f.name: str(f.type) for f in DeltaTable(uri, version=new, storage_options=opts).schema().fields}
    extra_old = sorted(c for c in str(commits.get(old, {}).get(_EXTRA, "")).split(",") if c)
    extra_new = sorted(c for c in str(commits.get(new, {}).get(_EXTRA, "")).split(",") if c)
    parts = column_change_parts(before, after)
    parts += column_change_parts(dict.fromkeys(extra_old, ""), dict.fromkeys(extra_new, ""), label="source")
    return ", ".join(parts) or "same columns"
