"""A second, unrelated monthly dataset declared in a few lines and run through the engine end to end.

``sales_YYYYMM.csv`` files (year and month as two groups, CSV instead of parquet): if the engine plans and
writes these, it knows nothing about any particular dataset.
"""

import pyarrow as pa
import pyarrow.csv as csv
from deltalake import DeltaTable

from partitions import (
    MaterializationRecord,
    MonthlyPartitions,
    PartitionState,
    code_version,
    list_source,
    open_input,
    overwrite_partition,
    plan,
    read_records,
)

SALES = MonthlyPartitions(r"sales_(?P<year>\d{4})(?P<month>\d{2})\.csv", start="2023-01")
SALES_CODE = code_version("sales-v1", ["store:int64", "amount:float64"])


def materialize_sales(source, table_uri, run_id):
    with open_input(source.uri) as handle:
        sales = csv.read_csv(handle)
    sales = sales.append_column("period", pa.array([source.partition] * sales.num_rows))
    rec = MaterializationRecord(
        source.partition,
        "success",
        run_id,
        SALES_CODE,
        source_uri=source.uri,
        source_fingerprint=source.fingerprint,
        rows_written=sales.num_rows,
    )
    return overwrite_partition(table_uri, sales, column="period", record=rec)


def test_a_sales_dataset_is_listed_planned_and_written_through_the_engine(tmp_path):
    src, table = tmp_path / "drop", str(tmp_path / "sales")
    src.mkdir()
    (src / "sales_202301.csv").write_text("store,amount\n1,9.5\n2,3.0\n")
    (src / "sales_202302.csv").write_text("store,amount\n1,4.0\n")
    (src / "sales_202213.csv").write_text("store,amount\n")
    cache = tmp_path / "fingerprints.json"

    listing = list_source(str(src), SALES, fingerprint_cache=cache)
    rows = plan(listing.files, read_records(table), code_version=SALES_CODE)
    assert [(r.partition, r.state) for r in rows] == [("2023-01", "missing"), ("2023-02", "missing")]
    assert [s.reason for s in listing.skipped] == ["name matches the pattern but '2022-13' is not a real month"]

    for row in rows:
        materialize_sales(listing.files[row.partition], table, run_id="sales-run-1")
    assert {r.state for r in plan(listing.files, read_records(table), code_version=SALES_CODE)} == {
        PartitionState.FRESH
    }
    assert DeltaTable(table).to_pyarrow_table().num_rows == 3

    (src / "sales_202302.csv").write_text("store,amount\n1,4.0\n3,1.25\n")
    listing = list_source(str(src), SALES, fingerprint_cache=cache)
    stale = [r for r in plan(listing.files, read_records(table), code_version=SALES_CODE) if r.state.is_stale]
    assert [(r.partition, r.state) for r in stale] == [("2023-02", PartitionState.SOURCE_CHANGED)]
    materialize_sales(listing.files["2023-02"], table, run_id="sales-run-2")
    assert DeltaTable(table).to_pyarrow_table().num_rows == 4
