"""Which nulls a month is expected to have, by column and schema era (``../shared/spec/fhvhv.md`` 1.2, 2.1, 2.3).

The report compares each month's null rate per column with this, so era-expected nulls (``airport_fee`` before the
fee, ``cbd_congestion_fee`` before 2025, ``wav_match_flag`` when it was null-typed) are not shown as defects, and
an unexpected one stands out. Kept apart from the synthetic generator on purpose: this is what the data should
look like, stated once, not how test data is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from taxi_assets.model.schema import COLUMNS, NULL_TYPED_COLUMNS

Expect = Literal["none", "all", "some"]

AIRPORT_FEE_FILLED_FROM: Final = "2022-01"  # filled from 2022 at the latest; all null in 2020-04, 2021-01 (spec 1.2)
CBD_FEE_FROM: Final = "2025-01"
# Null by design for part of the trips: Lyft/Via leave these empty (spec 2.1); flags hold ' ' -> null (2.3).
NULLABLE_BY_DESIGN: Final[dict[str, str]] = {
    "originating_base_num": "null for most Lyft and Via trips",
    "on_scene_datetime": "null for most Lyft and Via trips",
    "shared_request_flag": "flag: ' ' and other values than Y/N are null",
    "shared_match_flag": "flag: ' ' and other values than Y/N are null",
    "access_a_ride_flag": "flag: Uber writes ' ' (null) on every trip",
    "wav_request_flag": "flag: ' ' and other values than Y/N are null",
    "wav_match_flag": "flag: ' ' and other values than Y/N are null",
}


@dataclass(frozen=True, slots=True)
class Expectation:
    """What share of a column may be null in a month: ``none`` (0 %), ``all`` (100 %) or ``some`` (any)."""

    expect: Expect
    why: str

    def unexpected(self, null_pct: float) -> bool:
        """Whether ``null_pct`` (0..100) contradicts the expectation."""
        if self.expect == "none":
            return null_pct > 0
        if self.expect == "all":
            return null_pct < 100
        return False


def expected_nulls(column: str, month: str) -> Expectation:
    """The expectation for ``column`` in ``month`` (``YYYY-MM``)."""
    if column in NULL_TYPED_COLUMNS.get(month, ()):
        return Expectation("all", f"published null-typed in {month}")
    if column == "cbd_congestion_fee":
        if month < CBD_FEE_FROM:
            return Expectation("all", "column added 2025-01: null before")
        return Expectation("none", "charged on every trip from 2025-01")
    if column == "airport_fee" and month < AIRPORT_FEE_FILLED_FROM:
        return Expectation("some", "fee filled from 2022 at the latest: may be null before")
    if column in NULLABLE_BY_DESIGN:
        return Expectation("some", NULLABLE_BY_DESIGN[column])
    required = next(c.required for c in COLUMNS if c.name == column)
    return Expectation("none", "required: a null row is quarantined" if required else "never null in 2022-2024")
