"""Every drift of spec section 1 lands on the canonical schema; what cannot be cast safely rejects the file."""

from __future__ import annotations

import pickle
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from month_builders import set_column, valid_month, with_values

from taxi_assets.errors import SourceSchemaMismatch, UnparseableTimestamp
from taxi_assets.model.casts import canonical_timestamps, conform, plan_columns, repeat_string
from taxi_assets.model.schema import COLUMN_NAMES, trips_batch_schema, trips_schema
from taxi_assets.synth import month_schema

PATH = "mem://fhvhv_tripdata_test.parquet"
ROWS = 300


def run(table: pa.Table, month: str):
    plan = plan_columns(table.schema, partition=month, path=PATH)
    out = conform(table.combine_chunks().to_batches()[0], plan, partition=month, path=PATH)
    return plan, out


@pytest.mark.parametrize(
    "month",
    ["2019-02", "2019-04", "2019-07", "2020-04", "2020-10", "2023-01", "2023-02", "2024-12", "2025-01"],
)
def test_every_published_era_conforms_with_values_unchanged(month):
    table = valid_month(month, ROWS)
    assert table.schema == month_schema(month)  # the published schema, null types and large_string included
    plan, out = run(table, month)
    batch = out.batch
    assert batch.schema == trips_schema()
    assert plan.extra_columns == ()
    assert plan.renamed == ()
    for name in ("hvfhs_license_num", "dispatching_base_num", "PULocationID", "pickup_datetime", "trip_time"):
        assert batch.column(name).to_pylist() == table.column(name).to_pylist()
    for name in ("base_passenger_fare", "tips", "driver_pay"):
        assert batch.column(name).equals(table.column(name).combine_chunks())  # float64 bit for bit
    assert set(batch.column("month").to_pylist()) == {month}


@pytest.mark.parametrize(
    ("month", "null_typed"), [("2019-02", {"airport_fee", "wav_match_flag"}), ("2020-04", {"airport_fee"})]
)
def test_null_typed_columns_become_typed_all_null_columns(month, null_typed):
    table = valid_month(month, ROWS)
    assert {f.name for f in table.schema if pa.types.is_null(f.type)} == null_typed
    _, out = run(table, month)
    for name in null_typed:
        column = out.batch.column(name)
        assert column.type == trips_schema().field(name).type
        assert column.null_count == ROWS


def test_int64_and_int32_zone_ids_both_become_int32():
    old, new = valid_month("2023-01", ROWS), valid_month("2023-02", ROWS)
    assert old.schema.field("PULocationID").type == pa.int64()
    assert new.schema.field("PULocationID").type == pa.int32()
    for month, table in (("2023-01", old), ("2023-02", new)):
        _, out = run(table, month)
        assert out.batch.column("DOLocationID").type == pa.int32()


def test_a_zone_id_beyond_int32_rejects_the_file_naming_the_column():
    table = with_values(valid_month("2023-01", ROWS), {"PULocationID": {5: 2**40}})
    with pytest.raises(SourceSchemaMismatch, match="2023-01") as info:
        run(table, "2023-01")
    assert info.value.column == "PULocationID"
    assert info.value.path == PATH


@pytest.mark.parametrize("text_type", [pa.string(), pa.large_string(), pa.string_view()])
def test_string_large_string_and_view_become_string(text_type):
    table = valid_month("2023-03", ROWS)
    table = set_column(table, "dispatching_base_num", table["dispatching_base_num"].cast(text_type))
    _, out = run(table, "2023-03")
    assert out.batch.column("dispatching_base_num").type == pa.string()
    assert out.batch.column("dispatching_base_num").to_pylist() == table["dispatching_base_num"].to_pylist()


def test_dictionary_strings_and_dictionary_flags_are_decoded():
    table = valid_month("2022-06", ROWS)
    table = set_column(table, "hvfhs_license_num", table["hvfhs_license_num"].dictionary_encode())
    table = set_column(table, "access_a_ride_flag", table["access_a_ride_flag"].dictionary_encode())
    _, plain = run(valid_month("2022-06", ROWS), "2022-06")
    _, out = run(table, "2022-06")
    assert out.batch.column("hvfhs_license_num").type == pa.string()
    assert out.batch.equals(plain.batch)
    assert out.flags_nulled == plain.flags_nulled > 0  # Uber's ' ' in access_a_ride_flag


@pytest.mark.parametrize("dictionary", [False, True])
def test_flags_map_y_and_n_and_count_every_other_value_made_null(dictionary):
    table = valid_month("2022-06", 6)
    values = pa.array(["Y", "N", " ", None, "y", "N"], pa.string())
    table = set_column(table, "shared_request_flag", values.dictionary_encode() if dictionary else values)
    table = set_column(table, "access_a_ride_flag", pa.array(["N"] * 6))
    table = set_column(table, "wav_request_flag", pa.array(["N"] * 6))
    table = set_column(table, "shared_match_flag", pa.array(["N"] * 6))
    table = set_column(table, "wav_match_flag", pa.array(["Y"] * 6))
    _, out = run(table, "2022-06")
    assert out.batch.column("shared_request_flag").to_pylist() == [True, False, None, None, None, False]
    assert out.flags_nulled == 2  # ' ' and 'y'; a null stays a null and is not counted


def test_boolean_flags_pass_through():
    table = set_column(valid_month("2022-06", 3), "wav_request_flag", pa.array([True, False, None]))
    _, out = run(table, "2022-06")
    assert out.batch.column("wav_request_flag").to_pylist() == [True, False, None]


@pytest.mark.parametrize("unit", ["s", "ms", "ns"])
def test_other_timestamp_units_become_microseconds(unit):
    table = valid_month("2021-05", ROWS)
    table = set_column(table, "pickup_datetime", table["pickup_datetime"].cast(pa.timestamp(unit)))
    _, out = run(table, "2021-05")
    assert out.batch.column("pickup_datetime").type == pa.timestamp("us")
    assert (
        out.batch.column("pickup_datetime").to_pylist() == valid_month("2021-05", ROWS)["pickup_datetime"].to_pylist()
    )


def test_time_zone_aware_timestamps_become_new_york_wall_time():
    table = valid_month("2021-07", 2)
    instants = pa.array([datetime(2021, 7, 1, 16, 0), datetime(2021, 7, 2, 4, 30)], pa.timestamp("us", tz="UTC"))
    table = set_column(table, "request_datetime", instants)
    _, out = run(table, "2021-07")
    assert out.batch.column("request_datetime").to_pylist() == [
        datetime(2021, 7, 1, 12, 0),
        datetime(2021, 7, 2, 0, 30),
    ]


def test_cbd_fee_absent_before_2025_is_null_never_zero_and_kept_when_present():
    _, before = run(valid_month("2024-12", ROWS), "2024-12")
    assert before.batch.column("cbd_congestion_fee").null_count == ROWS
    table = valid_month("2025-02", ROWS)
    _, after = run(table, "2025-02")
    assert after.batch.column("cbd_congestion_fee").to_pylist() == table["cbd_congestion_fee"].to_pylist()
    assert pc.sum(after.batch.column("cbd_congestion_fee")).as_py() > 0


def test_integer_money_is_widened_to_float64():
    table = valid_month("2022-06", 3)
    table = set_column(table, "tolls", pa.array([0, 6, 13], pa.int64()))
    _, out = run(table, "2022-06")
    assert out.batch.column("tolls").to_pylist() == [0.0, 6.0, 13.0]


def test_unknown_columns_are_reported_and_left_out():
    table = set_column(valid_month("2022-06", ROWS), "request_source", pa.array(["app"] * ROWS))
    plan, out = run(table, "2022-06")
    assert plan.extra_columns == ("request_source",)
    assert "request_source" not in out.batch.schema.names


def test_a_column_in_another_case_is_matched_and_reported_as_renamed():
    table = valid_month("2022-06", ROWS).rename_columns(
        [("Airport_fee" if n == "airport_fee" else n) for n in month_schema("2022-06").names]
    )
    plan, out = run(table, "2022-06")
    assert plan.renamed == (("Airport_fee", "airport_fee"),)
    assert out.batch.column("airport_fee").to_pylist() == table["Airport_fee"].to_pylist()


@pytest.mark.parametrize("column", ["pickup_datetime", "PULocationID", "originating_base_num", "wav_match_flag"])
def test_a_missing_column_rejects_the_month_with_a_named_picklable_error(column):
    table = valid_month("2022-06", ROWS).drop_columns([column])
    with pytest.raises(SourceSchemaMismatch, match="2022-06") as info:
        plan_columns(table.schema, partition="2022-06", path=PATH)
    error = info.value
    assert (error.partition, error.path, error.column, error.found) == ("2022-06", PATH, column, "missing")
    assert "taxi_assets.model.schema" in str(error)  # the next step
    again = pickle.loads(pickle.dumps(error))
    assert (again.partition, again.column, str(again)) == (error.partition, error.column, str(error))


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("base_passenger_fare", ["12.5"] * ROWS),
        ("trip_time", [600.0] * ROWS),
    ],
)
def test_text_or_fractions_where_numbers_belong_reject_the_file(column, values):
    table = set_column(valid_month("2022-06", ROWS), column, pa.array(values))
    with pytest.raises(SourceSchemaMismatch) as info:
        plan_columns(table.schema, partition="2022-06", path=PATH)
    assert info.value.column == column


def test_the_same_column_twice_in_different_cases_is_rejected():
    table = set_column(valid_month("2022-06", ROWS), "AIRPORT_FEE", pa.array([1.0] * ROWS))
    with pytest.raises(SourceSchemaMismatch, match="present twice"):
        plan_columns(table.schema, partition="2022-06", path=PATH)


def test_repeat_string_builds_the_partition_column():
    assert repeat_string("2019-02", 3).to_pylist() == ["2019-02"] * 3
    assert repeat_string("2019-02", 0).to_pylist() == []
    assert repeat_string("2019-02", 5).validate(full=True) is None


def test_canonical_names_are_the_output_names():
    _, out = run(valid_month("2019-02", 10), "2019-02")
    assert tuple(out.batch.schema.names[:-1]) == COLUMN_NAMES


@pytest.mark.parametrize("layout", ["plain", "large", "dictionary", "null"])
def test_the_streaming_layout_keeps_strings_as_dictionaries_with_the_same_values(layout):
    table = valid_month("2023-03", ROWS)
    column = table["originating_base_num"]
    variants = {
        "plain": column.cast(pa.string()),
        "large": column,
        "dictionary": column.dictionary_encode(),
        "null": pa.nulls(ROWS),
    }
    table = set_column(table, "originating_base_num", variants[layout])
    plan = plan_columns(table.schema, partition="2023-03", path=PATH)
    batch = table.combine_chunks().to_batches()[0]
    streamed = conform(batch, plan, partition="2023-03", path=PATH, dictionary_strings=True).batch
    canonical = conform(batch, plan, partition="2023-03", path=PATH).batch
    assert streamed.schema == trips_batch_schema()
    assert streamed.column("originating_base_num").type == pa.dictionary(pa.int32(), pa.string())
    assert pa.Table.from_batches([streamed]).cast(trips_schema()).equals(pa.Table.from_batches([canonical]))


# -- timestamps published as ISO-8601 text ---------------------------------------------------------------------


def parse(values: list[str | None], first_row: int = 0) -> list[datetime | None]:
    return canonical_timestamps(
        pa.array(values, pa.string()), partition="2022-06", path=PATH, column="pickup_datetime", first_row=first_row
    ).to_pylist()


def test_iso_8601_text_is_parsed_as_new_york_wall_time():
    assert parse(
        [
            "2022-06-01 10:00:00",  # wall time, as the naive files
            "2022-06-01T10:00:00",
            "2022-06-01T10:00:00.25",
            "2022-06-01",  # a date: midnight
            None,
        ]
    ) == [
        datetime(2022, 6, 1, 10),
        datetime(2022, 6, 1, 10),
        datetime(2022, 6, 1, 10, 0, 0, 250_000),
        datetime(2022, 6, 1),
        None,
    ]


def test_iso_8601_text_with_a_zone_is_an_instant_shown_in_new_york_time():
    assert parse(["2022-06-01T14:00:00Z", "2022-06-01T10:00:00-04:00", "2022-01-15 15:30:00+0000"]) == [
        datetime(2022, 6, 1, 10),  # EDT: UTC-4
        datetime(2022, 6, 1, 10),
        datetime(2022, 1, 15, 10, 30),  # EST: UTC-5
    ]
    # wall times and instants mixed in one column: each as it says
    assert parse(["2022-06-01 10:00:00", "2022-06-01T14:00:00Z", None]) == [
        datetime(2022, 6, 1, 10),
        datetime(2022, 6, 1, 10),
        None,
    ]


@pytest.mark.parametrize(
    ("values", "row", "sample"),
    [
        (["2022-06-01 10:00:00"] * 5 + ["2022-06-31 25:61:00"] + ["2022-06-01 10:00:00"] * 3, 5, "2022-06-31 25:61:00"),
        (["06/01/2022 10:00"], 0, "06/01/2022 10:00"),
        (["2022-06-01T14:00:00Z", "2022-06-01 10:00:00", "yesterday"], 2, "yesterday"),
        ([None, "2022-06-01 10:00:00.1234567"], 1, "2022-06-01 10:00:00.1234567"),  # below a microsecond
    ],
)
def test_text_that_is_not_iso_8601_rejects_the_month_naming_column_row_and_value(values, row, sample):
    with pytest.raises(UnparseableTimestamp) as info:
        parse(values, first_row=1_000)
    error = info.value
    assert (error.partition, error.path, error.column, error.row, error.sample) == (
        "2022-06",
        PATH,
        "pickup_datetime",
        1_000 + row,
        sample,
    )
    assert f"'pickup_datetime' holds text that is not an ISO-8601 timestamp at row {1_000 + row}: {sample!r}" in str(
        error
    )
    assert error.exit_code == 3
    again = pickle.loads(pickle.dumps(error))
    assert (again.row, str(again)) == (error.row, str(error))


def test_a_month_with_text_timestamps_conforms_to_the_same_rows_as_the_typed_one():
    typed = valid_month("2022-06", ROWS)
    text = typed
    for name in ("request_datetime", "pickup_datetime", "dropoff_datetime"):
        text = set_column(text, name, pc.strftime(typed[name], format="%Y-%m-%dT%H:%M:%S"))
    (_, want), (_, got) = run(typed, "2022-06"), run(text, "2022-06")
    assert got.batch.equals(want.batch)
