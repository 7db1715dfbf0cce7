from datetime import datetime

import pytest

from partitions.errors import InvalidPartitionKey
from partitions.keys import MonthlyPartitions, month_bounds, month_range, parse_month, parse_selection


@pytest.mark.parametrize("text", ["2019-02", "2024-12", "0001-01"])
def test_parse_month_returns_a_real_month_unchanged(text):
    assert parse_month(text) == text


@pytest.mark.parametrize("text", ["2019-13", "2019-00", "2019-2", "19-02", "2019/02", " 2019-02", "0000-01", ""])
def test_parse_month_rejects_what_is_not_a_real_month(text):
    with pytest.raises(InvalidPartitionKey, match="YYYY-MM") as caught:
        parse_month(text)
    assert caught.value.key == text
    assert caught.value.exit_code == 2


def test_month_range_is_inclusive_and_crosses_years():
    assert month_range("2019-11", "2020-02") == ["2019-11", "2019-12", "2020-01", "2020-02"]
    assert month_range("2019-02", "2019-02") == ["2019-02"]


def test_month_range_refuses_a_reversed_range():
    with pytest.raises(InvalidPartitionKey, match="FIRST <= LAST"):
        month_range("2019-05", "2019-02")


def test_parse_selection_merges_lists_and_ranges_sorted_unique():
    assert parse_selection("2019-06, 2019-02,2019-04..2019-06") == ["2019-02", "2019-04", "2019-05", "2019-06"]
    assert parse_selection(["2019-04..2019-05", "2019-02"]) == ["2019-02", "2019-04", "2019-05"]
    assert parse_selection("") == []


def test_parse_selection_names_the_bad_item():
    with pytest.raises(InvalidPartitionKey, match="'2019-14'"):
        parse_selection("2019-02,2019-14")


def test_month_bounds_is_half_open_and_rolls_over_december():
    assert month_bounds("2019-12") == (datetime(2019, 12, 1), datetime(2020, 1, 1))
    assert month_bounds("2020-02") == (datetime(2020, 2, 1), datetime(2020, 3, 1))


def test_monthly_partitions_maps_names_to_keys():
    parts = MonthlyPartitions(r"events_(?P<key>\d{4}-\d{2})\.parquet", start="2019-02", end="2019-12")
    assert parts.key_for("events_2019-03.parquet") == "2019-03"
    assert parts.key_for("some/dir/EVENTS_2019-03.PARQUET") == "2019-03"  # case-insensitive by default
    assert parts.key_for("events_2019-13.parquet") is None
    assert parts.raw_key_for("events_2019-13.parquet") == "2019-13"
    assert parts.key_for("other_2019-03.parquet") is None
    assert parts.contains("2019-02")
    assert parts.contains("2019-12")
    assert not parts.contains("2019-01")
    assert not parts.contains("2020-01")


def test_monthly_partitions_accepts_year_and_month_groups():
    parts = MonthlyPartitions(r"sales_(?P<year>\d{4})(?P<month>\d{2})\.csv")
    assert parts.key_for("sales_201902.csv") == "2019-02"
    assert parts.contains("1999-01")


def test_monthly_partitions_can_be_case_sensitive():
    parts = MonthlyPartitions(r"e_(?P<key>\d{4}-\d{2})\.csv", ignore_case=False)
    assert parts.key_for("E_2019-02.CSV") is None


def test_monthly_partitions_refuses_a_pattern_without_a_month_group():
    with pytest.raises(ValueError, match="group"):
        MonthlyPartitions(r"events_\d{4}-\d{2}\.parquet")
    with pytest.raises(InvalidPartitionKey):
        MonthlyPartitions(r"(?P<key>.*)", start="2019-13")


def test_docstring_examples_hold():
    import doctest

    import partitions.keys

    result = doctest.testmod(partitions.keys)
    assert result.attempted >= 4
    assert result.failed == 0
