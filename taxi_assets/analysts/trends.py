"""Month-over-month figures and the flags a data-quality lead reads first, with why each one was raised.

A month is compared with the months before it (the median of up to :data:`BASELINE_MONTHS` previous months
present in the sink, so one odd month does not hide the next), never with the pooled total. Thresholds are
constants here, stated in every flag's ``why`` so a reader can judge them.
"""

from __future__ import annotations

from typing import Any, Final

import pandas as pd

from taxi_assets.analysts.expectations import expected_nulls
from taxi_assets.model.cleaning import RULE_NAMES
from taxi_assets.model.schema import COLUMN_NAMES

BASELINE_MONTHS: Final = 3
ROWS_CHANGE_PCT: Final = 25.0  # source rows vs the baseline: real months move by less (COVID 2020-04 aside)
RATE_FACTOR: Final = 2.0  # a quarantine rate (overall or per rule) above factor x baseline ...
RATE_MIN_STEP_PP: Final = 0.05  # ... and at least this many percentage points above it
SHARE_CHANGE_PP: Final = 5.0  # a company's share of the month's trips
NULL_CHANGE_PP: Final = 10.0  # a column that may be null: its null rate moves this much
COMPANIES: Final = ("Uber", "Lyft", "Via", "Juno")


def baseline(values: pd.Series, index: int) -> float | None:
    """Median of up to :data:`BASELINE_MONTHS` values before position ``index`` (None for the first month)."""
    before = values.iloc[max(0, index - BASELINE_MONTHS) : index].dropna()
    return float(before.median()) if len(before) else None


def month_over_month(overview: pd.DataFrame, shares: pd.DataFrame) -> pd.DataFrame:
    """One row per month: rows, change vs the previous month present, quarantine rate, company shares (%)."""
    out = overview[["month", "rows_source", "rows_clean", "rows_quarantined"]].copy()
    out["rows_change_pct"] = 100.0 * out["rows_source"].astype(float).pct_change()
    out["quarantine_pct"] = 100.0 * out["rows_quarantined"] / out["rows_source"].where(out["rows_source"] > 0)
    out["quarantine_change_pp"] = out["quarantine_pct"].diff()
    if not shares.empty:
        wide = shares.pivot_table(index="month", columns="company", values="share_pct", aggfunc="sum")
        for company in COMPANIES:
            out[f"{company} %"] = out["month"].map(wide[company]) if company in wide else 0.0
    return out.reset_index(drop=True)


def rule_rates(by_rule: pd.DataFrame, overview: pd.DataFrame) -> pd.DataFrame:
    """Rules x months: the % of the month's source rows breaking each rule, every rule listed (0 when none)."""
    months = list(overview["month"])
    table = pd.DataFrame(0.0, index=list(RULE_NAMES), columns=months)
    for row in by_rule.itertuples(index=False):
        if row.month in table.columns:
            table.loc[row.rule, row.month] = float(row.pct_of_source)
    table.index.name = "rule"
    return table


def null_table(nulls: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Columns x months of % null, and beside it whether each cell contradicts the month's expectation."""
    rates = nulls.set_index("month")[list(COLUMN_NAMES)].T.astype(float)
    unexpected = pd.DataFrame(
        {m: [expected_nulls(c, m).unexpected(rates.loc[c, m]) for c in rates.index] for m in rates.columns},
        index=rates.index,
    )
    return rates, unexpected


def flags(
    mom: pd.DataFrame, rules: pd.DataFrame, null_rates: pd.DataFrame, unexpected: pd.DataFrame
) -> list[dict[str, Any]]:
    """Every change beyond a threshold, oldest month first: ``month``, ``what``, ``value``, ``baseline``, ``why``."""
    found: list[dict[str, Any]] = []
    months = list(mom["month"])
    for i, month in enumerate(months):
        rows = mom.loc[i, "rows_source"]
        base = baseline(mom["rows_source"].astype(float), i)
        if base and abs(rows - base) / base * 100 > ROWS_CHANGE_PCT:
            change = (rows - base) / base * 100
            found.append(
                _flag(
                    month,
                    "source rows",
                    f"{rows:,.0f}",
                    f"{base:,.0f}",
                    f"{change:+.1f} % vs baseline, limit ±{ROWS_CHANGE_PCT:g} %",
                )
            )
        found += _rate_flag(month, "quarantine rate", mom["quarantine_pct"], i)
        for company in COMPANIES:
            column = f"{company} %"
            if column not in mom:
                continue
            share, base = mom.loc[i, column], baseline(mom[column], i)
            if base is not None and pd.notna(share) and abs(share - base) > SHARE_CHANGE_PP:
                found.append(
                    _flag(
                        month,
                        f"{company} share",
                        f"{share:.1f} %",
                        f"{base:.1f} %",
                        f"moved {share - base:+.1f} pp, limit ±{SHARE_CHANGE_PP:g} pp",
                    )
                )
        for rule in rules.index:
            found += _rate_flag(month, f"rule {rule}", rules.loc[rule].reindex(months), i)
        if month in null_rates.columns:
            for column in null_rates.index:
                rate = null_rates.loc[column, month]
                expectation = expected_nulls(column, month)
                if unexpected.loc[column, month]:
                    wanted = {"none": "0 %", "all": "100 %"}.get(expectation.expect, "any")
                    found.append(
                        _flag(month, f"nulls in {column}", _pct(rate), wanted, f"unexpected: {expectation.why}")
                    )
                    continue
                if expectation.expect == "some":  # against earlier months of the same expectation only
                    same = [m if expected_nulls(column, m).expect == "some" else None for m in months]
                    history = null_rates.loc[column].reindex(months).where([m is not None for m in same])
                    base = baseline(history, i)
                    if base is not None and abs(rate - base) > NULL_CHANGE_PP:
                        found.append(
                            _flag(
                                month,
                                f"nulls in {column}",
                                _pct(rate),
                                _pct(base),
                                f"moved {rate - base:+.1f} pp, limit ±{NULL_CHANGE_PP:g} pp ({expectation.why})",
                            )
                        )
    return found


def _rate_flag(month: str, what: str, rates: pd.Series, i: int) -> list[dict[str, Any]]:
    rate = float(rates.iloc[i]) if pd.notna(rates.iloc[i]) else 0.0
    base = baseline(rates.astype(float), i)
    if base is None:
        return []
    limit = max(base * RATE_FACTOR, base + RATE_MIN_STEP_PP)
    if rate <= limit:
        return []
    why = f"above {RATE_FACTOR:g}x the baseline and +{RATE_MIN_STEP_PP:g} pp (limit {_pct(limit)})"
    if base == 0:
        why = f"fired, after 0 in the previous months (limit {_pct(limit)})"
    return [_flag(month, what, _pct(rate), _pct(base), why)]


def _flag(month: str, what: str, value: str, base: str, why: str) -> dict[str, Any]:
    return {"month": month, "what": what, "value": value, "baseline": base, "why": why}


def _pct(value: float) -> str:
    return format_pct(value)


def format_pct(value: float | None) -> str:
    """A percentage readable at 0.1 % and below: 0 is "0 %", small values keep two significant digits."""
    if value is None or pd.isna(value):
        return "-"
    if value == 0:
        return "0 %"
    if abs(value) < 0.01:
        return f"{value:.4f} %"
    if abs(value) < 1:
        return f"{value:.3f} %"
    return f"{value:.2f} %"
