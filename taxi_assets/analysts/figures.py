"""The report's figures: one function per figure, each over the full month range so that a missing month is a gap.

Months are categorical positions (``health.month_range``): a month without data gets no bar and breaks every line
(NaN), instead of a line drawn across it. Rates get their own axes (percent, readable at 0.1 %), never a sliver
of a stacked count. Matplotlib only; the style comes from :func:`taxi_assets.analysts.report.apply_style`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from taxi_assets.analysts.trends import COMPANIES, format_pct

COMPANY_COLORS: Final = {"Uber": "#0072B2", "Lyft": "#CC79A7", "Via": "#009E73", "Juno": "#E69F00"}
CLEAN, BAD, GREY = "#0072B2", "#D55E00", "#999999"
THOUSANDS: Final = FuncFormatter(lambda x, _: f"{x:,.0f}")


def _months_axis(ax: plt.Axes, months: Sequence[str], present: set[str]) -> None:
    ax.set_xticks(range(len(months)))
    step = max(1, math.ceil(len(months) / 24))
    labels = [m if i % step == 0 else "" for i, m in enumerate(months)]
    ax.set_xticklabels(labels, rotation=45 if len(months) > 8 else 0, ha="right" if len(months) > 8 else "center")
    for i, month in enumerate(months):
        if month not in present:
            ax.axvspan(i - 0.5, i + 0.5, color="#eeeeee", zorder=0, linewidth=0)
    ax.set_xlim(-0.6, len(months) - 0.4)


def _missing_note(ax: plt.Axes, months: Sequence[str], present: set[str]) -> None:
    gaps = [m for m in months if m not in present]
    if gaps:
        ax.text(
            0.0,
            -0.32,
            f"grey: no data in the sink for {', '.join(gaps)}",
            transform=ax.transAxes,
            fontsize=9,
            color="#555555",
        )


def rows_and_quarantine(mom: pd.DataFrame, months: Sequence[str]) -> Figure:
    """Clean rows per month (bars) and the quarantine rate (its own percent axis, labelled), gaps for missing."""
    present = set(mom["month"])
    data = mom.set_index("month").reindex(months)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.6), sharex=True, height_ratios=[3, 2])
    x = np.arange(len(months))
    top.bar(x, data["rows_clean"], color=CLEAN, label="clean rows (trips)")
    top.set_title("Rows per month (clean) and share quarantined")
    top.set_ylabel("rows")
    top.yaxis.set_major_formatter(THOUSANDS)
    rate = data["quarantine_pct"]
    bottom.bar(x, rate, color=BAD)
    for xi, value in zip(x, rate, strict=True):
        if pd.notna(value):
            bottom.annotate(
                format_pct(value),
                (xi, value),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 2),
                textcoords="offset points",
            )
    bottom.set_ylabel("% of source rows quarantined")
    bottom.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    top_value = float(np.nanmax(rate.to_numpy(dtype=float))) if rate.notna().any() else 0.0
    bottom.set_ylim(0, max(top_value * 1.3, 0.1))
    _months_axis(bottom, months, present)
    _months_axis(top, months, present)
    _missing_note(bottom, months, present)
    return fig


def rule_trends(rates: pd.DataFrame, months: Sequence[str]) -> Figure:
    """Small multiples, one per rule (every rule, including those that never fired): % of source rows per month."""
    present = set(rates.columns)
    rules = list(rates.index)
    cols = 3
    rows = math.ceil(len(rules) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(11, 2.1 * rows), sharex=True, squeeze=False)
    x = np.arange(len(months))
    for ax, rule in zip(axes.flat, rules, strict=False):
        series = rates.loc[rule].reindex(months)
        fired = bool((series.fillna(0) > 0).any())
        ax.plot(x, series.to_numpy(dtype=float), color=BAD if fired else GREY, marker="o", markersize=3, linewidth=1.4)
        ax.set_title(rule + ("" if fired else "  (never fired)"), fontsize=10, color="#222" if fired else "#777")
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=None))
        peak = float(np.nanmax(series.to_numpy(dtype=float))) if series.notna().any() else 0.0
        ax.set_ylim(0, max(peak * 1.25, 0.1))
        _months_axis(ax, months, present)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(rules) :]:
        ax.set_visible(False)
    fig.suptitle("Quarantine rate per rule and month (% of the month's source rows; a row may break several)")
    return fig


def company_shares(shares: pd.DataFrame, months: Sequence[str]) -> Figure:
    """Each company's share of the month's trips, stacked to 100 %, gaps for missing months."""
    present = set(shares["month"])
    wide = shares.pivot_table(index="month", columns="company", values="share_pct", aggfunc="sum").reindex(months)
    fig, ax = plt.subplots(figsize=(10, 3.4))
    x = np.arange(len(months))
    bottom = np.zeros(len(months))
    for company in [c for c in COMPANIES if c in wide] + [c for c in wide if c not in COMPANIES]:
        values = wide[company].fillna(0).to_numpy(dtype=float)
        ax.bar(x, values, bottom=bottom, color=COMPANY_COLORS.get(company, GREY), label=company)
        bottom += values
    ax.set_title("Company share of each month's trips")
    ax.set_ylabel("share of trips")
    ax.yaxis.set_major_formatter(PercentFormatter())
    ax.set_ylim(0, 100)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    _months_axis(ax, months, present)
    return fig


def distributions(quantiles: Sequence[tuple[str, pd.DataFrame]], months: Sequence[str]) -> Figure:
    """Per month: the median (dot), the 25-75 % range (thick bar) and the 5-95 % range (thin bar) of each measure.

    Bars, not bands, so a month between two missing ones is as readable as the others; the medians are joined
    only between consecutive months.
    """
    fig, axes = plt.subplots(1, len(quantiles), figsize=(13, 3.6), squeeze=False)
    x = np.arange(len(months))
    for ax, (label, frame) in zip(axes.flat, quantiles, strict=True):
        present = set(frame["month"])
        data = frame.set_index("month").reindex(months).astype(float)
        ax.vlines(x, data["p05"], data["p95"], color=CLEAN, alpha=0.35, linewidth=2, label="5-95 %")
        ax.vlines(x, data["p25"], data["p75"], color=CLEAN, alpha=0.8, linewidth=7, label="25-75 %")
        ax.plot(x, data["p50"], color="#000000", marker="o", markersize=4, linewidth=1, label="median")
        ax.set_title(label.split(" (")[0])
        ax.set_ylabel(label)
        _months_axis(ax, months, present)
    axes.flat[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Distributions per month (clean trips)")
    return fig


def trips_per_day(daily: pd.DataFrame) -> Figure:
    """Trips per pickup day and company: 0 on a day of a month with data, a gap over months without any."""
    fig, ax = plt.subplots(figsize=(11, 3.8))
    frame = daily.assign(day=pd.to_datetime(daily["day"]))
    days = pd.date_range(frame["day"].min(), frame["day"].max(), freq="D")
    months_with_data = set(frame["day"].dt.strftime("%Y-%m"))
    in_data = np.array([d.strftime("%Y-%m") in months_with_data for d in days])
    for company, rows in frame.groupby("company"):
        series = np.array(rows.groupby("day")["trips"].sum().reindex(days).fillna(0), dtype=float)
        series[~in_data] = np.nan
        ax.plot(days, series, label=company, color=COMPANY_COLORS.get(str(company), GREY), linewidth=1.4)
    ax.set_title("Trips per day by company (pickup date, New York local time)")
    ax.set_ylabel("trips per day")
    ax.yaxis.set_major_formatter(THOUSANDS)
    ax.legend(title="company", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig
