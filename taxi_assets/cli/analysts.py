"""Analyst commands (`sql`, `report`), registered on the main parser by :func:`add_commands`.

Handlers return 0 or raise our named errors; `cli.main` is the one boundary that prints them. Query results
go to stdout only (a rich table for people, ``--format csv|json`` for scripts), so they pipe cleanly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import pyarrow as pa
from rich.table import Table

from partitions.keys import parse_selection
from taxi_assets.analysts.views import query
from taxi_assets.cli.render import console
from taxi_assets.errors import ConfigurationError
from taxi_assets.settings import Settings

FORMATS = ("table", "csv", "json")
TABLE_ROW_LIMIT = 1_000  # a terminal table past this is unreadable; csv and json print everything


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the analyst subcommands to the `taxi-assets` parser."""
    p = sub.add_parser(
        "sql",
        help="run one reading SQL query over the views trips, quarantine, daily_summary, checks, partitions, zones",
        description=(
            "Views read the Delta tables through their logs; filter on month to prune files. Only reading "
            "statements run, and only the sink's tables can be read (COPY, CREATE, SET, ATTACH are refused)."
        ),
    )
    p.add_argument("--sink", help="warehouse directory or s3:// URI (env TAXI_ASSETS_SINK; default ./data/warehouse)")
    p.add_argument("--format", default="table", choices=FORMATS, help="table (default), csv or json")
    p.add_argument(
        "--version",
        type=int,
        metavar="N",
        help="time travel: trips as of its table version N, the other tables as they were then",
    )
    p.add_argument("query", help='the SQL text, e.g. "SELECT month, count(*) FROM trips GROUP BY 1"; - reads stdin')
    p.set_defaults(handler=cmd_sql)

    p = sub.add_parser("report", help="render the quality report notebook to one self-contained HTML file")
    p.add_argument("--sink", help="warehouse directory or s3:// URI (env TAXI_ASSETS_SINK; default ./data/warehouse)")
    p.add_argument("--output", required=True, help="where to write the HTML file, e.g. quality_report.html")
    p.add_argument("--months", help="months to cover, e.g. 2019-02..2019-06 (default: every month in the sink)")
    p.set_defaults(handler=cmd_report)


def cmd_sql(args: argparse.Namespace) -> int:
    sql = sys.stdin.read() if args.query == "-" else args.query
    if not sql.strip():
        raise ConfigurationError("query", 'empty SQL; pass a query such as "SELECT count(*) FROM trips"')
    result = query(Settings.resolve(sink=args.sink).sink, sql, version=args.version)
    try:
        if args.format == "csv":
            write_csv(result)
        elif args.format == "json":
            sys.stdout.write(json.dumps(result.to_pylist(), default=_json_value, indent=2) + "\n")
        else:
            console().print(rich_table(result))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): what it read is what it wanted. Point stdout at /dev/null so the
        # interpreter's final flush does not raise again (the recipe of the `signal` module's docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    # Imported here, as cli.py does with Prefect: papermill and nbconvert cost seconds other commands skip.
    from taxi_assets.analysts.report import render_report

    cfg = Settings.resolve(sink=args.sink)
    months = parse_selection(args.months) if args.months else None
    path = render_report(cfg.sink, args.output, months=months)
    scope = f"{len(months)} month(s)" if months else "every month"
    console().print(f"Wrote {path} ({scope} of {cfg.sink}); open it in a browser, it needs no network.")
    return 0


def write_csv(table: pa.Table) -> None:
    """RFC 4180 CSV with a header; nulls as empty fields, lists and structs as JSON."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow(["" if v is None else _text(v) for v in row.values()])


def rich_table(table: pa.Table) -> Table:
    shown = min(table.num_rows, TABLE_ROW_LIMIT)
    caption = f"{table.num_rows} row(s)" + (
        f", first {shown} shown; use --format csv" if shown < table.num_rows else ""
    )
    out = Table(caption=caption, caption_justify="left")
    for field in table.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)
        out.add_column(field.name, justify="right" if numeric else "left")
    for row in table.slice(0, shown).to_pylist():
        out.add_row(*("" if v is None else _text(v) for v in row.values()))
    return out


def _text(value: Any) -> str:
    if isinstance(value, list | dict):
        return json.dumps(value, default=_json_value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):  # DuckDB's sum of integers is a HUGEINT, which Arrow carries as decimal(38, 0)
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)
