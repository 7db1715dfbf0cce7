"""Every quality rule on hand-placed faults: exact quarantined counts, every rule named per row, rows conserved."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from month_builders import valid_month, with_values

from taxi_assets.model.casts import conform, plan_columns
from taxi_assets.model.cleaning import RULE_NAMES, RULES, Misfiled, Rule, context_for, misfiled, split
from taxi_assets.model.schema import quarantine_schema, trips_schema
from taxi_assets.synth import generate_month

MONTH = "2022-06"
ROWS = 400


def canonical(table: pa.Table, month: str = MONTH) -> pa.RecordBatch:
    plan = plan_columns(table.schema, partition=month, path="test")
    return conform(table.combine_chunks().to_batches()[0], plan, partition=month, path="test").batch


def quarantined(changes, *, month: str = MONTH, first_row: int = 0):
    batch = canonical(with_values(valid_month(month, ROWS), changes), month)
    part = split(batch, context_for(month), first_row=first_row)
    assert part.clean.num_rows + part.quarantine.num_rows == ROWS
    assert part.clean.schema == trips_schema()
    assert part.quarantine.schema == quarantine_schema()
    return part


def rules_by_row(part) -> dict[int, list[str]]:
    q = part.quarantine
    return dict(zip(q.column("source_row").to_pylist(), q.column("rule").to_pylist(), strict=True))


def test_a_valid_month_loses_no_row():
    part = quarantined({})
    assert part.quarantine.num_rows == 0
    assert part.by_rule == {}


# (rule, faulty cells, cells that sit exactly on the allowed side of the same threshold)
CASES = [
    ("missing_required", {"pickup_datetime": {3: None}, "driver_pay": {9: None}}, {"originating_base_num": {4: None}}),
    (
        "dropoff_not_after_pickup",
        {"dropoff_datetime": {3: datetime(2022, 6, 10, 8, 0)}, "pickup_datetime": {3: datetime(2022, 6, 10, 8, 0)}},
        {"dropoff_datetime": {4: datetime(2022, 6, 10, 8, 0, 1)}, "pickup_datetime": {4: datetime(2022, 6, 10, 8)}},
    ),
    (
        "pickup_outside_month",
        {
            "pickup_datetime": {3: datetime(2022, 5, 31, 23, 59, 59), 7: datetime(2022, 7, 1), 8: datetime(2001, 6, 3)},
            "dropoff_datetime": {
                3: datetime(2022, 6, 1, 0, 9),
                7: datetime(2022, 7, 1, 0, 9),
                8: datetime(2001, 6, 3, 0, 9),
            },
        },
        {
            "pickup_datetime": {4: datetime(2022, 6, 1), 5: datetime(2022, 6, 30, 23, 59, 59)},
            "dropoff_datetime": {4: datetime(2022, 6, 1, 0, 9), 5: datetime(2022, 7, 1, 0, 9)},
        },
    ),
    (
        "zone_out_of_range",
        {"PULocationID": {3: 0}, "DOLocationID": {7: 266}},
        {"PULocationID": {4: 264, 5: 1}, "DOLocationID": {6: 265}},
    ),
    ("negative_fare", {"base_passenger_fare": {3: -0.01, 9: -43.09}}, {"base_passenger_fare": {4: 0.0}}),
    ("fare_over_limit", {"base_passenger_fare": {3: 2500.01}}, {"base_passenger_fare": {4: 2500.0}}),
    ("negative_driver_pay", {"driver_pay": {3: -67.76}}, {"driver_pay": {4: 0.0}}),
    ("non_positive_miles", {"trip_miles": {3: 0.0, 7: -1.5}}, {"trip_miles": {4: 0.01}}),
    ("miles_over_limit", {"trip_miles": {3: 100.01, 7: 418.0}}, {"trip_miles": {4: 100.0}}),
    ("non_positive_duration", {"trip_time": {3: 0, 7: -60}}, {"trip_time": {4: 1}}),
    ("duration_over_limit", {"trip_time": {3: 10_801}}, {"trip_time": {4: 10_800}}),
    (
        "negative_charge",
        {
            "tolls": {1: -6.55},
            "bcf": {2: -0.1},
            "sales_tax": {3: -1.0},
            "congestion_surcharge": {4: -2.75},
            "tips": {5: -1.0},
        },
        {"tolls": {6: 0.0}, "tips": {7: 0.0}},
    ),
]


def test_every_rule_has_a_case():
    assert sorted(name for name, _, _ in CASES) == sorted(RULE_NAMES)


@pytest.mark.parametrize(("rule", "faults", "edges"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_quarantines_exactly_its_rows(rule, faults, edges):
    changes: dict[str, dict[int, object]] = {}
    for cells in (faults, edges):
        for column, values in cells.items():
            changes.setdefault(column, {}).update(values)
    part = quarantined(changes)
    expected_rows = sorted({row for values in faults.values() for row in values})
    assert rules_by_row(part) == {row: [rule] for row in expected_rows}
    assert part.by_rule == {rule: len(expected_rows)}
    reason = next(r.reason for r in RULES if r.name == rule)
    assert set(part.quarantine.column("reason").to_pylist()) == {reason}


def test_a_row_breaking_several_rules_lists_all_of_them_in_rule_order():
    part = quarantined(
        {"trip_miles": {10: 0.0}, "base_passenger_fare": {10: -5.0}, "trip_time": {10: 0}, "tips": {11: -1.0}}
    )
    assert rules_by_row(part) == {
        10: ["negative_fare", "non_positive_miles", "non_positive_duration"],
        11: ["negative_charge"],
    }
    assert part.by_rule == {
        "negative_fare": 1,
        "non_positive_miles": 1,
        "non_positive_duration": 1,
        "negative_charge": 1,
    }
    reasons = part.quarantine.column("reason").to_pylist()
    assert reasons[0].count(";") == 2


def test_quarantined_rows_keep_their_source_position_and_values():
    part = quarantined({"driver_pay": {5: -1.0, 250: -2.0}}, first_row=1_000)
    q = part.quarantine
    assert q.column("source_row").to_pylist() == [1_005, 1_250]
    assert q.column("driver_pay").to_pylist() == [-1.0, -2.0]
    assert set(q.column("month").to_pylist()) == {MONTH}


def test_nulls_in_optional_columns_break_nothing():
    part = quarantined({"airport_fee": {3: None}, "on_scene_datetime": {4: None}, "shared_request_flag": {5: None}})
    assert part.quarantine.num_rows == 0


def test_a_null_compared_with_a_threshold_counts_only_as_missing_required():
    part = quarantined({"trip_miles": {3: None}})
    assert rules_by_row(part) == {3: ["missing_required"]}


def test_adding_a_rule_is_adding_one_entry():
    extra = Rule("night_owl", "pickup between 3 and 4 am", lambda _: pc.hour(pc.field("pickup_datetime")) == 3)
    batch = canonical(valid_month(MONTH, ROWS))
    part = split(batch, context_for(MONTH), first_row=0, rules=[*RULES, extra])
    hours = pc.hour(batch.column("pickup_datetime"))
    assert part.by_rule == {"night_owl": pc.sum(pc.equal(hours, 3).cast(pa.int64())).as_py()}


def test_rule_names_are_built_per_combination_not_per_row():
    # 2 % faulty rows, two combinations: the lists are shared values taken by index
    faults = {row: -1.0 for row in range(0, ROWS, 50)}
    part = quarantined({"driver_pay": faults, "tips": {0: -1.0}})
    names = part.quarantine.column("rule").to_pylist()
    assert names[0] == ["negative_driver_pay", "negative_charge"]
    assert all(n == ["negative_driver_pay"] for n in names[1:])
    assert part.by_rule == {"negative_driver_pay": len(faults), "negative_charge": 1}


EXPECTED_RULE = {
    "A1": "negative_fare",
    "A2": "negative_driver_pay",
    "A4": "non_positive_miles",
    "A5": "miles_over_limit",
    "A6": "non_positive_duration",
    "A7": "duration_over_limit",
    "A8": "dropoff_not_after_pickup",
    "A17:zone_out_of_range": "zone_out_of_range",
    "A17:pickup_outside_month": "pickup_outside_month",
    "A17:bad_year": "pickup_outside_month",
    "A17:null_required": "missing_required",
}


def test_every_synthetic_fault_that_breaks_the_s6_filter_is_quarantined_under_its_rule():
    extra = {"zone_out_of_range": 0.002, "pickup_outside_month": 0.002, "null_required": 0.002, "bad_year": 0.002}
    table, truth = generate_month(MONTH, 20_000, seed=11, anomalies="stress", extra=extra)
    part = split(canonical(table), context_for(MONTH), first_row=0)
    caught = rules_by_row(part)
    faulty = {row: EXPECTED_RULE[anomaly] for row, anomaly in truth if anomaly in EXPECTED_RULE}
    assert set(EXPECTED_RULE) <= {anomaly for _, anomaly in truth}  # every kind was injected
    assert all(rule in caught.get(row, []) for row, rule in faulty.items())
    natural = set(caught) - set(faulty)  # the generator's own tails (e.g. > 100 miles), kept rare
    assert len(natural) <= 20_000 * 0.001


def test_quarantined_rows_of_a_dictionary_batch_are_stored_as_plain_strings():
    table = with_values(valid_month(MONTH, ROWS), {"driver_pay": {5: -1.0}})
    plan = plan_columns(table.schema, partition=MONTH, path="test")
    batch = conform(table.to_batches()[0], plan, partition=MONTH, path="test", dictionary_strings=True).batch
    part = split(batch, context_for(MONTH), first_row=0)
    assert part.quarantine.schema == quarantine_schema()
    assert part.quarantine.column("hvfhs_license_num").to_pylist() == [table["hvfhs_license_num"][5].as_py()]
    assert part.clean_rows == ROWS - 1


def test_a_file_is_misfiled_only_when_more_than_half_of_its_rows_lie_in_other_months():
    assert misfiled("2019-04", 100, {"2019-04": 100}) is None
    assert misfiled("2019-04", 100, {"2019-04": 50, "2019-05": 50}) is None  # half is not most
    assert misfiled("2019-04", 100, {"2019-04": 49, "2019-05": 30, "2019-06": 21}) == Misfiled(51, 100, "2019-05")
    assert misfiled("2019-04", 100, {"2019-05": 100}) == Misfiled(100, 100, "2019-05")
    assert misfiled("2019-04", 100, {"2019-04": 10}) is None  # 90 null pickups: bad rows, not another month
    assert misfiled("2019-04", 0, {}) is None
    assert misfiled("2019-04", 10, {"2019-06": 3, "2019-05": 3, "2019-03": 0}) == Misfiled(6, 10, "2019-05")  # tie
