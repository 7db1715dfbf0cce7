"""What changed when a month was published again, from Delta time travel: the two ``trips`` versions compared.

For each re-written month (a success after an earlier success, :func:`health.publication_history`), the month's
rows at the previous version and at the new one are read back (``delta_scan(..., version => n)`` with the month
filter, so only that month's files of each version are opened) and compared: rows per company, the table's
columns (added, removed, retyped between the two table schemas), the source's extra columns the records kept,
and the trips themselves by identity digest (``taxi_assets.model.row_digest.IDENTITY``: licence, times, zones,
miles, fare, driver pay), as multisets: how many of the new version's trips were not in the old one (new) and
how many of the old one's are no longer there (gone). A re-run of the same source shows 0 and 0; a re-published
file that only added trips shows new > 0 and gone = 0.

The cost is two scans of the month per re-publication, which is why the report audits only the months listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import duckdb
from deltalake import DeltaTable

from taxi_assets.io.duckdb import open_connection, register_table
from taxi_assets.model.row_digest import row_hash_sql
from taxi_assets.model.schema import trips_schema

_EXTRA = "partitions.extra.fhvhv.extra_columns"


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
            for version in (old, new):
                register_table(
                    con, f"v{version}", trips_uri, schema=trips_schema(), version=version, storage_options=opts
                )
            month = str(after["month"])
            out.append(
                {
                    "month": month,
                    "versions": f"{old} -> {new}",
                    "cause": after["cause"],
                    "row delta": (after["rows"] or 0) - (before["rows"] or 0),
                    "by company": _company_deltas(con, f"v{old}", f"v{new}", month),
                    "columns": _column_changes(trips_uri, old, new, opts, commits),
                    **_digest_changes(con, f"v{old}", f"v{new}", month),
                }
            )
    return out


def _company_deltas(con: duckdb.DuckDBPyConnection, old: str, new: str, month: str) -> str:
    sql = f"""
        WITH a AS (SELECT hvfhs_license_num AS k, count(*) AS n FROM {old} WHERE month = ? GROUP BY k),
             b AS (SELECT hvfhs_license_num AS k, count(*) AS n FROM {new} WHERE month = ? GROUP BY k)
        SELECT coalesce(a.k, b.k) AS k, coalesce(b.n, 0) - coalesce(a.n, 0) AS d
        FROM a FULL OUTER JOIN b ON a.k = b.k ORDER BY k"""
    names = {"HV0002": "Juno", "HV0003": "Uber", "HV0004": "Via", "HV0005": "Lyft"}
    rows = con.execute(sql, [month, month]).fetchall()
    changed = [f"{names.get(k, k)} {d:+,}" for k, d in rows if d]
    return ", ".join(changed) or "no change"


def _column_changes(
    uri: str, old: int, new: int, opts: dict[str, str] | None, commits: Mapping[int, Mapping[str, Any]]
) -> str:
    before = {f.name: str(f.type) for f in DeltaTable(uri, version=old, storage_options=opts).schema().fields}
    after = {f.name: str(f.type) for f in DeltaTable(uri, version=new, storage_options=opts).schema().fields}
    parts = [f"+{c}" for c in after if c not in before] + [f"-{c}" for c in before if c not in after]
    parts += [f"{c}: {before[c]} -> {after[c]}" for c in after if c in before and before[c] != after[c]]
    extra_old = {c for c in str(commits.get(old, {}).get(_EXTRA, "")).split(",") if c}
    extra_new = {c for c in str(commits.get(new, {}).get(_EXTRA, "")).split(",") if c}
    parts += [f"source +{c}" for c in sorted(extra_new - extra_old)]
    parts += [f"source -{c}" for c in sorted(extra_old - extra_new)]
    return ", ".join(parts) or "same columns"


def _digest_changes(con: duckdb.DuckDBPyConnection, old: str, new: str, month: str) -> dict[str, Any]:
    digest = row_hash_sql()
    sql = f"""
        WITH a AS (SELECT {digest} AS h, count(*) AS n FROM {old} WHERE month = ? GROUP BY h),
             b AS (SELECT {digest} AS h, count(*) AS n FROM {new} WHERE month = ? GROUP BY h)
        SELECT coalesce(sum(greatest(coalesce(b.n, 0) - coalesce(a.n, 0), 0)), 0) AS new_trips,
               coalesce(sum(greatest(coalesce(a.n, 0) - coalesce(b.n, 0), 0)), 0) AS gone_trips,
               coalesce(sum(a.n), 0) AS old_rows, coalesce(sum(b.n), 0) AS new_rows
        FROM a FULL OUTER JOIN b ON a.h = b.h"""
    row = con.execute(sql, [month, month]).fetchone()
    new_trips, gone, old_rows, new_rows = (int(v) for v in row) if row else (0, 0, 0, 0)
    return {
        "new trips": new_trips,
        "new %": 100.0 * new_trips / new_rows if new_rows else 0.0,
        "gone trips": gone,
        "gone %": 100.0 * gone / old_rows if old_rows else 0.0,
    }
