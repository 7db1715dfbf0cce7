"""A missing or broken ``duckdb_extension_httpfs`` package costs one warning, not the run (issue 16.5).

Each case runs in a fresh interpreter: the extension packages are imported (or not) once per process, and
the one-warning promise is per process. "Missing" is an import that fails (``sys.modules`` holds None for the
package, as after an uninstall); "broken" is a real package on ``PYTHONPATH`` shadowing the wheel, whose
extension file is not a DuckDB extension.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

TESTS = Path(__file__).resolve().parents[1]

# Runs a whole month on the S3-compatible server (source, trips, quarantine, checks all on S3), then opens two
# more connections, recording every warning; prints what the parent asserts on.
_MONTH_ON_S3 = """
import json, os, sys, warnings
if os.environ.get("HIDE_HTTPFS"):
    sys.modules["duckdb_extension_httpfs"] = None  # import fails with ModuleNotFoundError, as when uninstalled
sys.path.insert(0, os.environ["TESTS_DIR"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from builders import s3_settings
    from servers import S3Server
    from taxi_assets.assets.trips import new_run_id, plan_months, run_month
    from taxi_assets.io.duckdb import ExtensionUnavailable, open_connection, register_table, _loaded
    from taxi_assets.model.schema import trips_schema
    from taxi_assets.synth import write_month_file

    cfg = s3_settings(S3Server(endpoint=os.environ["ENDPOINT"]), os.environ["BUCKET"])
    write_month_file(cfg.source, "2019-02", 300, seed=5, storage_options=cfg.storage_options(cfg.source))
    plan = plan_months(cfg)
    result = run_month(plan.listing.files["2019-02"], cfg, run_id=new_run_id(), code_version=plan.code_version)
    opts = cfg.storage_options(cfg.trips_uri)
    access, loaded = [], {}
    for _ in range(2):
        con = open_connection(storage_options=opts)
        loaded = {name: _loaded(con, name) for name in ("httpfs", "delta")}
        access.append(register_table(con, "t", cfg.trips_uri, schema=trips_schema(), storage_options=opts))
        rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
        con.close()
print(json.dumps({
    "warnings": [str(w.message) for w in caught if issubclass(w.category, ExtensionUnavailable)],
    "checks_failed": [c["check"] for c in result.checks if not c["passed"]],
    "checks": len(result.checks),
    "rows_written": result.rows_written,
    "rows": rows,
    "access": access,
    "loaded": loaded,
}))
"""

# Opens two connections and reads a local Delta table through each.
_LOCAL = """
import json, sys, warnings
import pyarrow as pa
from deltalake import write_deltalake
from taxi_assets.io.duckdb import ExtensionUnavailable, open_connection, register_table, _loaded
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    write_deltalake(sys.argv[1], pa.table({"month": ["2019-02"] * 3, "x": [1, 2, 3]}))
    counts = []
    for _ in range(2):
        with open_connection() as con:
            register_table(con, "t", sys.argv[1], schema=pa.schema([("month", pa.string()), ("x", pa.int64())]))
            counts.append(con.execute("SELECT sum(x) FROM t").fetchone()[0])
            loaded = {name: _loaded(con, name) for name in ("httpfs", "delta")}
print(json.dumps({
    "warnings": [str(w.message) for w in caught if issubclass(w.category, ExtensionUnavailable)],
    "counts": counts,
    "loaded": loaded,
}))
"""


def run_python(code: str, *args: str, env: dict[str, str]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.integration
@pytest.mark.slow
def test_without_httpfs_a_month_on_s3_runs_and_checks_through_arrow_with_one_warning(s3_server, s3_bucket):
    env = {"HIDE_HTTPFS": "1", "TESTS_DIR": str(TESTS), "ENDPOINT": s3_server.endpoint, "BUCKET": s3_bucket}
    out = run_python(_MONTH_ON_S3, env=env)
    assert len(out["warnings"]) == 1, out["warnings"]  # two connections in the month, two more here: one warning
    (warning,) = out["warnings"]
    assert "extension httpfs not loaded (ModuleNotFoundError" in warning
    assert f"pip install 'duckdb-extension-httpfs=={duckdb.__version__}'" in warning
    assert out["loaded"] == {"httpfs": False, "delta": True}
    assert out["checks"] == 6
    assert out["checks_failed"] == []
    assert out["access"] == ["arrow", "arrow"]  # no S3 secret without httpfs: deltalake's dataset, not delta_scan
    assert out["rows"] == out["rows_written"] > 0
    assert s3_server.secret not in warning


@pytest.mark.integration
@pytest.mark.slow
def test_with_httpfs_the_same_month_uses_delta_scan_and_warns_nothing(s3_server, s3_bucket):
    env = {"TESTS_DIR": str(TESTS), "ENDPOINT": s3_server.endpoint, "BUCKET": s3_bucket}
    out = run_python(_MONTH_ON_S3, env=env)
    assert out["warnings"] == []
    assert out["loaded"] == {"httpfs": True, "delta": True}
    assert out["access"] == ["delta_scan", "delta_scan"]
    assert out["checks_failed"] == []


def test_a_broken_httpfs_package_warns_once_and_queries_still_run(tmp_path):
    package = tmp_path / "shadow" / "duckdb_extension_httpfs"
    ext = package / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    ext.parent.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    ext.write_bytes(b"not a duckdb extension\n" * 64)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.environ.get("PYTHONPATH", "")])}
    out = run_python(_LOCAL, str(tmp_path / "t"), env=env)
    assert len(out["warnings"]) == 1, out["warnings"]
    assert "extension httpfs not loaded" in out["warnings"][0]
    assert out["loaded"] == {"httpfs": False, "delta": True}
    assert out["counts"] == [6, 6]
