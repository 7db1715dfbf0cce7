"""Synthetic FHVHV months (taxi_assets.synth): schemas per era, calibration, anomalies, layouts, writing."""

from __future__ import annotations

import io
import json
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from taxi_assets.model.zones import zone_lookup
from taxi_assets.synth import (
    A17_RULES,
    day_row_counts,
    default_layout,
    era_of,
    generate_month,
    iter_month_chunks,
    month_schema,
    real_rows,
    row_group_sizes,
    write_month_file,
    write_months,
)
from taxi_assets.synth._params import month_params
from taxi_assets.synth.layouts import ARROW_MAX_ROW_GROUP

CALIBRATION_ROWS = 200_000
STRESS_ROWS = 60_000


def ipc_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def seconds(table: pa.Table, name: str) -> np.ndarray:
    """A timestamp column as int64 seconds; nulls become the minimum int64 (never in these checks)."""
    return pc.cast(table[name], pa.int64()).to_numpy(zero_copy_only=False) // 1_000_000


def column(table: pa.Table, name: str) -> np.ndarray:
    return table[name].to_numpy(zero_copy_only=False)


def truth_rows(truth: list[tuple[int, str]], anomaly_id: str) -> set[int]:
    return {row for row, found in truth if found == anomaly_id}


# ---------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_another_seed_does_not():
    first, truth_a = generate_month("2024-03", 3_000, seed=7)
    second, truth_b = generate_month("2024-03", 3_000, seed=7)
    other, _ = generate_month("2024-03", 3_000, seed=8)
    assert ipc_bytes(first) == ipc_bytes(second)
    assert truth_a == truth_b
    assert ipc_bytes(first) != ipc_bytes(other)


def test_months_draw_from_independent_streams():
    march, _ = generate_month("2024-03", 2_000, seed=1)
    april, _ = generate_month("2024-04", 2_000, seed=1)
    assert not np.array_equal(column(march, "base_passenger_fare"), column(april, "base_passenger_fare"))


def test_chunks_of_whole_days_concatenate_to_the_single_call():
    whole, truth = generate_month("2019-12", 5_000, seed=3, anomalies="stress")
    chunks = list(iter_month_chunks("2019-12", 5_000, seed=3, anomalies="stress", chunk_rows=700))
    assert len(chunks) > 3
    assert ipc_bytes(pa.concat_tables(c.table for c in chunks).combine_chunks()) == ipc_bytes(whole)
    pairs = [(int(r), str(i)) for c in chunks for r, i in zip(c.truth_rows, c.truth_ids, strict=True)]
    assert pairs == truth


def test_a_small_month_can_be_generated_directly_and_an_empty_one_too():
    table, _ = generate_month("2024-03", 500, seed=1)
    empty, truth = generate_month("2024-03", 0, seed=1)
    assert table.num_rows == 500
    assert empty.num_rows == 0
    assert empty.schema == month_schema("2024-03")
    assert truth == []


# ---------------------------------------------------------------- eras and schemas


def expected_schema(*, modern: bool, null_columns: tuple[str, ...], cbd: bool) -> pa.Schema:
    """Spec 1.1/1.2 written out by hand, independent of eras.py."""
    text = pa.large_string() if modern else pa.string()
    location = pa.int32() if modern else pa.int64()
    ts = pa.timestamp("us")
    f8 = pa.float64()
    fields = [
        ("hvfhs_license_num", text), ("dispatching_base_num", text), ("originating_base_num", text),
        ("request_datetime", ts), ("on_scene_datetime", ts), ("pickup_datetime", ts), ("dropoff_datetime", ts),
        ("PULocationID", location), ("DOLocationID", location), ("trip_miles", f8), ("trip_time", pa.int64()),
        ("base_passenger_fare", f8), ("tolls", f8), ("bcf", f8), ("sales_tax", f8),
        ("congestion_surcharge", f8), ("airport_fee", f8), ("tips", f8), ("driver_pay", f8),
        ("shared_request_flag", text), ("shared_match_flag", text), ("access_a_ride_flag", text),
        ("wav_request_flag", text), ("wav_match_flag", text),
    ]  # fmt: skip
    if cbd:
        fields.append(("cbd_congestion_fee", f8))
    return pa.schema([(name, pa.null() if name in null_columns else kind) for name, kind in fields])


@pytest.mark.parametrize(
    ("month", "era", "modern", "null_columns", "cbd"),
    [
        ("2019-02", "A", False, ("airport_fee", "wav_match_flag"), False),
        ("2019-04", "B", False, ("airport_fee",), False),
        ("2020-04", "C", False, ("airport_fee",), False),
        ("2021-06", "C", False, (), False),
        ("2023-01", "C", False, (), False),
        ("2023-02", "D", True, (), False),
        ("2025-01", "E", True, (), True),
    ],
)
def test_generated_schema_is_the_published_schema_of_the_era(month, era, modern, null_columns, cbd):
    table, _ = generate_month(month, 300, seed=2)
    expected = expected_schema(modern=modern, null_columns=null_columns, cbd=cbd)
    assert era_of(month) == era
    assert month_schema(month) == expected
    assert table.schema == expected
    assert table.schema.names[-1] == ("cbd_congestion_fee" if cbd else "wav_match_flag")


def test_airport_fee_is_empty_before_2022_and_filled_after():
    typed_but_empty, _ = generate_month("2021-06", 400, seed=1)
    filled, _ = generate_month("2022-06", 400, seed=1)
    assert typed_but_empty["airport_fee"].null_count == 400
    assert filled["airport_fee"].null_count == 0
    assert set(column(filled, "airport_fee")) <= {0.0, 2.5, 5.0}


def test_cbd_fee_starts_on_2025_01_05():
    table, _ = generate_month("2025-01", 20_000, seed=1)
    fee, pickup = column(table, "cbd_congestion_fee"), seconds(table, "pickup_datetime")
    start = np.datetime64("2025-01-05", "s").astype(np.int64)
    assert set(fee[pickup < start]) == {0.0}
    assert set(fee[pickup >= start]) == {0.0, 1.5}
    assert 0.25 < (fee[pickup >= start] > 0).mean() < 0.45  # S7: 35.9% in mid-January


def test_real_rows_come_from_the_table_and_later_months_are_stable_draws():
    assert real_rows("2020-04") == 4_312_909
    assert real_rows("2025-01") == 20_405_666
    later = real_rows("2027-05")
    assert later == real_rows("2027-05")
    assert 20_500_000 - 5 * 900_000 < later < 20_500_000 + 5 * 900_000
    with pytest.raises(ValueError, match="2019-02"):
        real_rows("2019-01")
    with pytest.raises(ValueError, match="2024-13"):
        era_of("2024-13")


def test_default_layout_is_single_until_2024_and_arrow_1mi_from_2025():
    assert default_layout("2019-02") == default_layout("2024-12") == "single"
    assert default_layout("2025-01") == "arrow-1Mi"


# ---------------------------------------------------------------- zones


def test_zone_lookup_matches_the_published_counts():
    zones = zone_lookup()
    assert zones.schema.names == ["LocationID", "Borough", "Zone", "service_zone"]
    assert column(zones, "LocationID").tolist() == list(range(1, 266))
    assert Counter(column(zones, "Borough").tolist()) == {
        "Manhattan": 69, "Queens": 69, "Brooklyn": 61, "Bronx": 43, "Staten Island": 20,
        "EWR": 1, "Unknown": 1, "N/A": 1,
    }  # fmt: skip
    assert Counter(column(zones, "service_zone").tolist()) == {
        "Boro Zone": 205, "Yellow Zone": 55, "Airports": 2, "N/A": 2, "EWR": 1,
    }  # fmt: skip
    rows = {r["LocationID"]: (r["Borough"], r["Zone"], r["service_zone"]) for r in zones.to_pylist()}
    assert rows[1] == ("EWR", "Newark Airport", "EWR")
    assert rows[132] == ("Queens", "JFK Airport", "Airports")
    assert rows[138] == ("Queens", "LaGuardia Airport", "Airports")
    assert rows[264] == ("Unknown", "N/A", "N/A")
    assert rows[265] == ("N/A", "Outside of NYC", "N/A")
    assert rows[56][1] == rows[57][1] == "Corona"
    assert {rows[i][1] for i in (103, 104, 105)} == {"Governor's Island/Ellis Island/Liberty Island"}
    assert zones["Zone"].null_count == zones["Borough"].null_count == 0


# ---------------------------------------------------------------- calibration (spec 7.5)


@pytest.fixture(scope="module")
def calibration_month() -> tuple[pa.Table, list[tuple[int, str]]]:
    return generate_month("2024-06", CALIBRATION_ROWS, seed=11)


def test_calibration_companies_and_null_rates(calibration_month):
    table, _ = calibration_month
    uber = column(table, "hvfhs_license_num") == "HV0003"
    target = month_params("2024-06").uber_share
    assert abs(uber.mean() - target) < 0.01
    non_uber = 1 - uber.mean()
    for name in ("originating_base_num", "on_scene_datetime"):
        assert abs(table[name].null_count / table.num_rows - non_uber) < 0.005
    others = [n for n in table.column_names if n not in ("originating_base_num", "on_scene_datetime")]
    assert all(table[n].null_count == 0 for n in others)
    assert set(column(table, "access_a_ride_flag")[uber]) == {" "}
    assert set(column(table, "access_a_ride_flag")[~uber]) == {"N"}


def test_calibration_times(calibration_month):
    table, truth = calibration_month
    request, pickup = seconds(table, "request_datetime"), seconds(table, "pickup_datetime")
    wait = pickup - request
    assert 230 <= np.median(wait) <= 280
    assert 0.008 <= (wait < 0).mean() <= 0.011
    start, end = (np.datetime64(t, "s").astype(np.int64) for t in ("2024-06-01", "2024-07-01"))
    assert ((pickup < start) | (pickup >= end)).sum() == 0
    order = np.lexsort((pickup, request))
    assert np.array_equal(order, np.arange(table.num_rows))  # sorted by request, then pickup
    faulty = {row for row, found in truth if found != "A11"}
    clean = np.array([i not in faulty for i in range(table.num_rows)])
    gap = seconds(table, "dropoff_datetime") - pickup - column(table, "trip_time")
    assert np.abs(gap[clean]).max() <= 1  # S1: trip_time = dropoff - pickup within 1 s


def test_calibration_distance_and_money(calibration_month):
    table, _ = calibration_month
    assert 2.9 <= np.median(column(table, "trip_miles")) <= 3.5
    fare = column(table, "base_passenger_fare")
    paid = fare > 0
    for name, rate in (("bcf", month_params("2024-06").bcf_rate), ("sales_tax", 0.08875)):
        value = column(table, name)
        assert np.abs(value[paid] - rate * fare[paid]).max() <= 0.005 + 1e-9
        assert set(value[~paid]) <= {0.0}
    tips = column(table, "tips")
    assert 0.03 < tips.sum() / fare[paid].sum() < 0.06  # S16: tips are 4-5% of fare
    assert 0.75 < column(table, "driver_pay").sum() / fare[paid].sum() < 0.82  # S16: 79%


def test_calibration_locations(calibration_month):
    table, _ = calibration_month
    pu, do = column(table, "PULocationID"), column(table, "DOLocationID")
    assert 0.035 <= np.isin(do, [264, 265]).mean() <= 0.043
    assert np.isin(pu, [264, 265]).mean() < 0.0005
    assert pu.min() >= 1
    assert pu.max() <= 265
    assert do.min() >= 1
    assert do.max() <= 265


def test_no_timestamp_falls_in_the_spring_forward_hour():
    table, truth = generate_month("2024-03", 60_000, seed=5)
    gap_start = np.datetime64("2024-03-10T02:00:00", "s").astype(np.int64)
    for name in ("request_datetime", "pickup_datetime", "dropoff_datetime"):
        values = seconds(table, name)
        assert not ((values >= gap_start) & (values < gap_start + 3600)).any(), name
    faulty = {row for row, found in truth if found != "A11"}
    clean = np.array([i not in faulty for i in range(table.num_rows)])
    gap = seconds(table, "dropoff_datetime") - seconds(table, "pickup_datetime") - column(table, "trip_time")
    assert np.abs(gap[clean]).max() <= 1
    assert (np.diff(seconds(table, "request_datetime")) >= 0).all()


# ---------------------------------------------------------------- anomalies


@pytest.fixture(scope="module")
def stress_month() -> tuple[pa.Table, list[tuple[int, str]]]:
    return generate_month("2025-01", STRESS_ROWS, seed=21, anomalies="stress")


def anomaly_predicates(table: pa.Table) -> dict[str, np.ndarray]:
    """Each anomaly id of spec 3.2 as a test on the data alone."""
    request, pickup = seconds(table, "request_datetime"), seconds(table, "pickup_datetime")
    dispatching, originating = column(table, "dispatching_base_num"), column(table, "originating_base_num")
    flags = [column(table, n) for n in ("shared_request_flag", "shared_match_flag", "wav_request_flag")]
    return {
        "A1": column(table, "base_passenger_fare") < 0,
        "A2": column(table, "driver_pay") < 0,
        "A3": column(table, "base_passenger_fare") == 0,
        "A4": column(table, "trip_miles") == 0,
        "A5": column(table, "trip_miles") > 100,
        "A6": column(table, "trip_time") <= 0,
        "A7": column(table, "trip_time") > 3 * 3600,
        "A8": seconds(table, "dropoff_datetime") <= pickup,
        "A9": pickup < request,
        "A10": pickup - request > 3600,
        "A11": np.isin(column(table, "DOLocationID"), [264, 265]),
        "A12": np.isin(column(table, "PULocationID"), [264, 265]),
        "A14": (flags[1] == "Y") & (flags[0] == "N"),
        "A15": (column(table, "hvfhs_license_num") == "HV0003") & (originating != None) & (originating != dispatching),  # noqa: E711
        "A16": np.isin(column(table, "congestion_surcharge"), [5.5, 8.25]),
        "A18": (flags[0] == " ") | (flags[1] == " ") | (flags[2] == " "),
    }


def test_ground_truth_is_exactly_what_the_data_show(stress_month):
    table, truth = stress_month
    for anomaly_id, found in anomaly_predicates(table).items():
        assert set(np.flatnonzero(found).tolist()) == truth_rows(truth, anomaly_id), anomaly_id


def test_ground_truth_holds_in_an_old_era_and_across_the_spring_forward_hour():
    table, truth = generate_month("2021-03", 40_000, seed=8, anomalies="stress")
    for anomaly_id, found in anomaly_predicates(table).items():
        assert set(np.flatnonzero(found).tolist()) == truth_rows(truth, anomaly_id), anomaly_id


def test_stress_rates_are_a_hundred_times_realistic_capped_at_two_percent(stress_month):
    _, truth = stress_month
    counts = Counter(found for _, found in truth)
    assert 0.015 < counts["A1"] / STRESS_ROWS < 0.025  # 0.05% x 100 = 5%, capped at 2%
    assert 0.003 < counts["A8"] / STRESS_ROWS < 0.005  # 0.004% x 100 = 0.4%
    assert counts["A13"] >= 2


def test_anomalies_are_exclusive_except_a11(stress_month):
    _, truth = stress_month
    per_row = Counter(row for row, found in truth if found != "A11")
    assert max(per_row.values()) == 1


def test_key_collisions_come_in_pairs_sharing_the_key(stress_month):
    table, truth = stress_month
    key = ["hvfhs_license_num", "dispatching_base_num", "pickup_datetime", "dropoff_datetime"]
    key += ["PULocationID", "DOLocationID"]
    rows = table.take(sorted(truth_rows(truth, "A13"))).select(key).to_pylist()
    groups = Counter(tuple(r.values()) for r in rows)
    assert min(groups.values()) >= 2


def test_clean_mode_keeps_only_the_natural_patterns():
    table, truth = generate_month("2024-06", 20_000, seed=4, anomalies="clean")
    assert {found for _, found in truth} == {"A9", "A11"}
    assert (column(table, "base_passenger_fare") > 0).all()


def test_test_only_rules_are_off_by_default_and_switch_on_one_by_one():
    _, default_truth = generate_month("2024-06", 5_000, seed=6, anomalies="stress")
    assert not any(found.startswith("A17") for _, found in default_truth)
    extra = dict.fromkeys(A17_RULES, 0.01)
    table, truth = generate_month("2024-06", 20_000, seed=6, extra=extra)
    assert {f"A17:{rule}" for rule in A17_RULES} <= {found for _, found in truth}
    pickup = seconds(table.filter(pc.is_valid(table["pickup_datetime"])), "pickup_datetime")
    start, end = (np.datetime64(t, "s").astype(np.int64) for t in ("2024-06-01", "2024-07-01"))
    outside = sorted(truth_rows(truth, "A17:pickup_outside_month"))
    moved = seconds(table.take(outside), "pickup_datetime")
    assert ((moved < start) | (moved >= end)).all()
    years = pc.year(table.take(sorted(truth_rows(truth, "A17:bad_year")))["pickup_datetime"])
    assert set(years.to_pylist()) <= {2001, 2098}
    assert ((pickup < start) | (pickup >= end)).sum() == len(outside) + len(truth_rows(truth, "A17:bad_year"))
    zones = table.take(sorted(truth_rows(truth, "A17:zone_out_of_range")))
    bad = [(r["PULocationID"], r["DOLocationID"]) for r in zones.select(["PULocationID", "DOLocationID"]).to_pylist()]
    assert all(pu == 0 or pu > 265 or do == 0 or do > 265 for pu, do in bad)
    missing = table.take(sorted(truth_rows(truth, "A17:null_required")))
    assert all(None in row.values() for row in missing.to_pylist())
    rows = table.to_pylist()
    seen = Counter(tuple(r.values()) for r in rows)
    assert all(seen[tuple(rows[i].values())] >= 2 for i in truth_rows(truth, "A17:exact_duplicate"))


def test_shuffle_keeps_the_rows_and_remaps_the_truth():
    ordered, _ = generate_month("2024-06", 5_000, seed=9, anomalies="stress")
    shuffled, truth = generate_month("2024-06", 5_000, seed=9, anomalies="stress", shuffle=True)
    request = seconds(shuffled, "request_datetime")
    assert (np.diff(request) < 0).any()
    key = ["request_datetime", "pickup_datetime", "base_passenger_fare", "driver_pay"]
    assert ordered.sort_by([(k, "ascending") for k in key]).equals(shuffled.sort_by([(k, "ascending") for k in key]))
    assert set(np.flatnonzero(column(shuffled, "base_passenger_fare") < 0).tolist()) == truth_rows(truth, "A1")


def test_bad_arguments_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="A17 rule"):
        generate_month("2024-06", 10, seed=1, extra={"bad_rule": 0.1})
    with pytest.raises(ValueError, match="seed"):
        generate_month("2024-06", 10, seed=-1)
    with pytest.raises(ValueError, match="month"):
        generate_month("2024-6", 10, seed=1)


# ---------------------------------------------------------------- row-group layouts


def test_layout_rules():
    assert row_group_sizes("single", 20_000, month="2024-06", seed=0) == [20_000]
    scaled = row_group_sizes("arrow-1Mi", 20_406, month="2025-01", seed=0)
    assert len(scaled) == 20
    assert sum(scaled) == 20_406
    full = row_group_sizes("arrow-1Mi", real_rows("2025-01"), month="2025-01", seed=0)
    assert len(full) == 20
    assert full[0] == ARROW_MAX_ROW_GROUP
    daily = row_group_sizes("daily", 20_000, month="2024-06", seed=0)
    assert daily == day_row_counts("2024-06", 20_000, seed=0).tolist()
    assert len(daily) == 30
    nonuniform = row_group_sizes("nonuniform", 20_000, month="2024-06", seed=0)
    assert sum(nonuniform) == 20_000
    assert min(nonuniform) > 0
    assert max(nonuniform) >= 10_000
    assert nonuniform[-1] < 200
    assert len(set(nonuniform)) > 3


@pytest.mark.parametrize(("layout", "groups"), [("single", 1), ("arrow-1Mi", 20), ("daily", 30)])
def test_written_file_has_the_layout_and_reads_back_as_generated(tmp_path, layout, groups):
    written = write_month_file(str(tmp_path), "2024-06", 4_000, seed=3, layout=layout)
    expected, truth = generate_month("2024-06", 4_000, seed=3)
    path = tmp_path / "fhvhv_tripdata_2024-06.parquet"
    assert written.uri == str(path)
    assert written.bytes == path.stat().st_size
    assert written.row_groups == groups == pq.ParquetFile(path).metadata.num_row_groups
    assert pq.read_table(path).equals(expected)
    document = json.loads((tmp_path / "_truth" / "fhvhv_tripdata_2024-06.json").read_text())
    assert document["counts"] == dict(Counter(found for _, found in truth))
    assert document["rows_by_id"]["A1"] == sorted(truth_rows(truth, "A1"))


def test_nonuniform_file_has_one_group_holding_half_the_rows(tmp_path):
    written = write_month_file(str(tmp_path), "2019-02", 6_000, seed=5, layout="nonuniform")
    metadata = pq.ParquetFile(written.uri).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert max(sizes) >= 3_000
    assert len(set(sizes)) > 2
    assert sum(sizes) == 6_000


def test_stored_schema_keeps_null_and_large_string_types(tmp_path):
    write_month_file(str(tmp_path), "2019-02", 500, seed=1)
    write_month_file(str(tmp_path), "2023-02", 500, seed=1)
    assert pq.read_schema(tmp_path / "fhvhv_tripdata_2019-02.parquet") == month_schema("2019-02")
    assert pq.read_schema(tmp_path / "fhvhv_tripdata_2023-02.parquet") == month_schema("2023-02")


def test_write_months_scales_the_real_counts_and_reports_progress(tmp_path, capsys):
    written = write_months(str(tmp_path), ["2019-02", "2020-04"], scale=1e-4, seed=2, progress=True)
    assert [w.rows for w in written] == [round(20_159_102e-4), round(4_312_909e-4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "_truth",
        "fhvhv_tripdata_2019-02.parquet",
        "fhvhv_tripdata_2020-04.parquet",
    ]
    assert "2020-04" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not both"):
        write_months(str(tmp_path), ["2019-02"], 10, scale=1e-4)


@pytest.mark.integration
def test_writing_to_s3_gives_the_same_file(s3_server, s3_bucket):
    written = write_months(
        f"s3://{s3_bucket}/trip-data",
        ["2025-01"],
        3_000,
        seed=4,
        layout={"2025-01": "nonuniform"},
        storage_options=s3_server.storage_options(),
    )[0]
    assert written.uri == f"s3://{s3_bucket}/trip-data/fhvhv_tripdata_2025-01.parquet"
    client = s3_server.boto3_client()
    keys = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert set(keys) == {"trip-data/fhvhv_tripdata_2025-01.parquet", "trip-data/_truth/fhvhv_tripdata_2025-01.json"}
    assert keys["trip-data/fhvhv_tripdata_2025-01.parquet"] == written.bytes
    body = client.get_object(Bucket=s3_bucket, Key="trip-data/fhvhv_tripdata_2025-01.parquet")["Body"].read()
    expected, _ = generate_month("2025-01", 3_000, seed=4)
    assert pq.read_table(pa.BufferReader(body)).equals(expected)
    assert pq.ParquetFile(pa.BufferReader(body)).metadata.num_row_groups == written.row_groups > 1
