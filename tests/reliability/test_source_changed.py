"""A source month replaced on S3 while its month is read commits nothing; the next run takes the new file.

S3 (and HTTP) reads are ranges of the object by name, not pinned to the ETag the plan saw, so a replacement that
lands during the read can hand the reader bytes of both versions. The month body asks the source again once the
rows are read and before anything is committed (one listing) and refuses the month when the file changed. Real
parts: a moto S3 server in its own process, real Delta tables; the replacement is made from inside the read
(after its first batch), where a republication by the TLC would land.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import network_cases
from reliability_cases import (
    MONTH,
    materialize,
    month_rows,
    published_month,
    put_source,
    s3_settings,
    version,
    write_file,
)

from taxi_assets.assets.trips import new_run_id, plan_months, run_month
from taxi_assets.errors import SourceChanged
from taxi_assets.io import reader as reader_module
from taxi_assets.model.cleaning import Split
from taxi_assets.settings import Settings

pytestmark = [pytest.mark.integration]


def test_a_month_replaced_during_its_read_is_not_committed_and_the_next_run_takes_the_new_file(
    s3_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = s3_settings(s3_server, s3_server.make_bucket("changed"))
    first, second, third = (
        published_month(MONTH, rows, seed=seed) for rows, seed in ((900, 1), (1_100, 2), (1_300, 3))
    )
    put_source(cfg, MONTH, first)
    materialize(cfg, MONTH)
    before = {t: (version(cfg, t), month_rows(cfg, t, MONTH)) for t in ("trips", "quarantine")}

    put_source(cfg, MONTH, second)  # republished: the plan sees this file
    plan = plan_months(cfg, partitions=[MONTH])
    planned = plan.listing.files[MONTH]
    batches = reader_module.MonthReader.batches

    def replaced_after_the_first_batch(self: reader_module.MonthReader) -> Iterator[Split]:
        for number, part in enumerate(batches(self)):
            yield part
            if number == 0:
                put_source(cfg, MONTH, third)  # republished again while the month is being read

    monkeypatch.setattr(reader_module.MonthReader, "batches", replaced_after_the_first_batch)
    with pytest.raises(SourceChanged) as info:
        run_month(planned, cfg, run_id=new_run_id(), code_version=plan.code_version)
    assert info.value.planned == planned.fingerprint
    assert info.value.now not in ("", planned.fingerprint, "gone")
    assert str(info.value).startswith(f"{MONTH}: s3://")
    assert "changed while it was read" in str(info.value)
    assert {t: (version(cfg, t), month_rows(cfg, t, MONTH)) for t in before} == before  # the old month, whole

    monkeypatch.undo()
    again = plan_months(cfg)
    assert [r.partition for r in again.stale] == [MONTH]  # source changed since the last success
    materialize(cfg, MONTH)
    assert month_rows(cfg, "trips", MONTH) + month_rows(cfg, "quarantine", MONTH) == third.num_rows


def test_a_source_that_does_not_answer_the_check_after_a_complete_read_does_not_fail_the_month(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "site"
    table = published_month(MONTH, 800, seed=4)
    write_file(root, MONTH, table)
    with network_cases().FileServer(root) as server:
        cfg = Settings.resolve(
            source=server.url("fhvhv_tripdata_{key}.parquet"), sink=str(tmp_path / "warehouse"), env={}
        )
        plan = plan_months(cfg, partitions=[MONTH])
        batches = reader_module.MonthReader.batches

        def source_silent_once_read(self: reader_module.MonthReader) -> Iterator[Split]:
            yield from batches(self)
            server.script[MONTH] = [503] * 100  # every request for the month from now on: the check's HEADs

        monkeypatch.setattr(reader_module.MonthReader, "batches", source_silent_once_read)
        result = run_month(plan.listing.files[MONTH], cfg, run_id=new_run_id(), code_version=plan.code_version)
        assert server.seen[MONTH] >= 1  # the check asked, and got 503s
    assert result.ok
    assert month_rows(cfg, "trips", MONTH) + month_rows(cfg, "quarantine", MONTH) == table.num_rows
