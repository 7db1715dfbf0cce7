"""HTML pieces of the report: tables with thousands separators and full texts, the health grid, one stylesheet.

pandas' notebook tables cut cells at 50 characters and print ``1234567``; a quality report needs ``1,234,567``
and every word of a check's text. These helpers escape every value (data is never trusted as markup) and mark
state with a word and a colour (Okabe-Ito: readable with the common colour-vision deficiencies), never colour
alone.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, Final

from taxi_assets.analysts.health import ASSETS, STATES, Cell

STATE_COLORS: Final = {
    "fresh": ("#009E73", "#E3F4EE"),
    "stale": ("#8A5A00", "#FCEFD3"),
    "failed": ("#B24600", "#F9DED0"),
    "rejected": ("#8E4B75", "#F4E1EC"),
    "missing": ("#555555", "#EEEEEE"),
}
STYLE: Final = """
<style>
.qr { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; font-size: 13px; color: #222; }
.qr { overflow-x: auto; }
.qr table { border-collapse: collapse; margin: 6px 0 14px; }
.qr th, .qr td { border: 1px solid #ddd; padding: 3px 7px; vertical-align: top; white-space: nowrap; }
.qr th { background: #f4f4f4; text-align: left !important; font-weight: 600; }
.qr td.num { text-align: right !important; font-variant-numeric: tabular-nums; }
.qr td.text { text-align: left !important; }
.qr td.wrap { white-space: normal; min-width: 16em; max-width: 48em; }
.qr td.bad { background: #F9DED0; color: #7a2e00; font-weight: 600; }
.qr td.expected { color: #777; }
.qr table.grid td { text-align: center !important; min-width: 8em; max-width: 26em; white-space: normal; }
.qr dl.meta dt { white-space: nowrap; }
.qr .state { display: inline-block; min-width: 5.5em; padding: 1px 6px; border-radius: 3px; font-weight: 600; }
.qr .legend span { margin-right: 12px; }
.qr .muted { color: #666; }
.qr dl.meta { display: grid; grid-template-columns: max-content auto; gap: 2px 12px; }
.qr dl.meta dt { font-weight: 600; }
.qr dl.meta dd { margin: 0; font-family: ui-monospace, monospace; }
</style>
"""


def fmt(value: Any) -> str:
    """One cell's text: integers with thousands separators, floats with two decimals, nothing for null."""
    if value is None or type(value).__name__ == "NAType" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return fmt(value.item())
    return str(value)


def table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
    *,
    formats: Mapping[str, Callable[[Any], str]] | None = None,
    cell_class: Callable[[Mapping[str, Any], str], str] | None = None,
    caption: str = "",
    wrap: Sequence[str] = (),
) -> str:
    """An HTML table of ``rows`` (dicts); numbers right-aligned; ``cell_class(row, column)`` adds a CSS class.

    Cells never wrap (a wide table scrolls) except the columns named in ``wrap``: long texts, shown in full.
    """
    if not rows:
        return f'<p class="muted">{html.escape(caption or "No rows.")}</p>'
    names = list(columns or rows[0].keys())
    formats = formats or {}
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = []
    for row in rows:
        cells = []
        for name in names:
            value = row.get(name)
            text = formats[name](value) if name in formats else fmt(value)
            numeric = _is_number(value)
            classes = ["num" if numeric else "text", *(["wrap"] if name in wrap else [])]
            if cell_class is not None and (extra := cell_class(row, name)):
                classes.append(extra)
            cells.append(f'<td class="{" ".join(classes)}">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f'<div class="qr"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def state_badge(state: str) -> str:
    fg, bg = STATE_COLORS[state]
    return f'<span class="state" style="color:{fg};background:{bg}">{html.escape(state)}</span>'


def health_grid(grid: Mapping[str, Mapping[str, Cell]]) -> str:
    """Months (rows) x assets (columns), each cell its state word on its colour, the cause on hover and below."""
    if not grid:
        return '<p class="muted">No month in the sink for this selection.</p>'
    head = "<th>month</th>" + "".join(f"<th>{a}</th>" for a in ASSETS)
    rows = []
    for month, cells in grid.items():
        tds = []
        for asset in ASSETS:
            cell = cells[asset]
            fg, bg = STATE_COLORS[cell.state]
            why = html.escape(cell.why)
            detail = f'<br><small style="color:{fg}">{why}</small>' if cell.why and cell.state != "fresh" else ""
            tds.append(f'<td style="background:{bg}" title="{why}"><b style="color:{fg}">{cell.state}</b>{detail}</td>')
        rows.append(f"<tr><th>{html.escape(month)}</th>{''.join(tds)}</tr>")
    counts = {s: sum(c.state == s for cells in grid.values() for c in cells.values()) for s in STATES}
    legend = " ".join(f"<span>{state_badge(s)} {counts[s]:,}</span>" for s in STATES)
    return (
        f'<div class="qr"><p class="legend">{legend}</p>'
        f'<table class="grid"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
    )


def meta(items: Mapping[str, str]) -> str:
    """The report's header facts as a definition list."""
    body = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items.items())
    return f'<div class="qr"><dl class="meta">{body}</dl></div>'


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iuf"
