"""A sink the command cannot use gives one named line and its documented exit code, and changes no table.

Cases (docs/reliability.md, "Exit codes"): the sink path runs through a file (2, before anything is read or
written), a read-only sink (2), a full disk (9; simulated with the file-size limit, RLIMIT_FSIZE, which any
user can lower, and with a 256 KiB tmpfs in a private mount namespace where that is allowed), a missing bucket
under `materialize` (2). Each write case first materializes the month into a good sink and checks afterwards
that its version and rows are unchanged.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from builders import write_months
from deltalake import DeltaTable

from taxi_assets.cli.main import main

MONTH = "2019-04"
ROWS = 20_000  # data files of ~1 MiB: over the limits below, while a Delta log entry stays far under them


def cli(
    *args: str, cache: Path, limit_bytes: int | None = None, wrap: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``taxi-assets ARGS`` in a subprocess, with its own fingerprint cache (``cache``: the user's may be large)."""

    def lower_file_size() -> None:
        if limit_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run(
        [*(wrap or []), sys.executable, "-m", "taxi_assets", *args],
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=lower_file_size,
        env={**os.environ, "XDG_CACHE_HOME": str(cache)},
    )


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("source")
    write_months(str(root), [MONTH], rows=ROWS, seed=3)
    return root


@pytest.fixture
def built(source: Path, tmp_path: Path) -> Path:
    """A sink holding the month (version 0 of each table)."""
    sink = tmp_path / "warehouse"
    assert main(["materialize", "--partition", MONTH, "--source", str(source), "--sink", str(sink)]) == 0
    return sink


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err
    return lines[0]


def snapshot(sink: Path) -> tuple[int, int]:
    table = DeltaTable(str(sink / "trips"))
    return table.version(), table.to_pyarrow_dataset().count_rows()


@pytest.mark.parametrize("command", ["plan", "status", "materialize", "run", "sql"])
def test_a_sink_under_a_file_is_refused_before_anything_runs(
    command: str, source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "not-a-dir"
    afile.write_text("x")
    args = {
        "materialize": ["materialize", "--partition", MONTH],
        "sql": ["sql", "select 1"],
    }.get(command, [command])
    io = ["--sink", str(afile / "warehouse")] + (["--source", str(source)] if command != "sql" else [])
    assert main([*args, *io]) == 2
    line = one_line(capsys.readouterr().err)
    assert line == (
        f"taxi-assets: --sink / TAXI_ASSETS_SINK: {afile / 'warehouse'}: the sink lies under {afile}, which is a "
        "file, not a directory"
    )
    assert afile.read_text() == "x"


def test_a_sink_that_is_a_file_is_named_as_such(source: Path, tmp_path: Path, capsys) -> None:
    afile = tmp_path / "warehouse"
    afile.write_text("x")
    assert main(["plan", "--source", str(source), "--sink", str(afile)]) == 2
    assert one_line(capsys.readouterr().err).endswith(f"{afile}: the sink is a file, not a directory")


def test_a_full_disk_half_way_through_a_month_is_exit_9_and_the_previous_version_stays(
    source: Path, built: Path, figure
) -> None:
    before = snapshot(built)
    done = cli(
        "materialize", "--partition", MONTH, "--source", str(source), "--sink", str(built),
        cache=built.parent / "cache", limit_bytes=256_000,
    )  # fmt: skip
    figure("sink_edge", case="file-size limit", exit=done.returncode)
    assert done.returncode == 9, done.stderr[-3000:]
    line = one_line(done.stderr)
    assert line.startswith(f"taxi-assets: {built}: no space left for the sink's files (")
    assert "nothing partial was committed" in line
    assert snapshot(built) == before


def _mount_namespace_allowed() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(not _mount_namespace_allowed(), reason="no private mount namespace here")


def in_private_mount(mount_options: str, target: Path) -> list[str]:
    """A prefix that runs the command with a fresh tmpfs (``mount_options``) on ``target``, seen by it alone."""
    return ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o {mount_options} tmpfs "{target}" && exec "$@"', "sh"]


@needs_mounts
def test_a_really_full_file_system_is_exit_9(source: Path, tmp_path: Path, figure) -> None:
    target = tmp_path / "small"
    target.mkdir()
    sink = target / "warehouse"
    done = cli(
        "materialize", "--partition", MONTH, "--source", str(source), "--sink", str(sink),
        cache=tmp_path / "cache", wrap=in_private_mount("size=256k", target),
    )  # fmt: skip
    figure("sink_edge", case="256 KiB tmpfs", exit=done.returncode)
    assert done.returncode == 9, done.stderr[-3000:]
    assert "No space left on device" in one_line(done.stderr)


def test_a_read_only_sink_is_exit_2_and_keeps_its_version(source: Path, built: Path, figure) -> None:
    before = snapshot(built)
    if os.geteuid() != 0:
        wrap, restore = None, [p for p in built.rglob("*") if p.is_dir()] + [built]
        for p in restore:
            p.chmod(0o555)
    elif _mount_namespace_allowed():  # root ignores modes: a read-only bind of the sink, for this command only
        script = f'mount --bind "{built}" "{built}" && mount -o remount,bind,ro "{built}" && exec "$@"'
        wrap, restore = ["unshare", "-m", "sh", "-c", script, "sh"], []
    else:
        pytest.skip("running as root without a private mount namespace: no way to make a directory read-only")
    try:
        done = cli(
            "materialize", "--partition", MONTH, "--source", str(source), "--sink", str(built),
            cache=built.parent / "cache", wrap=wrap,
        )  # fmt: skip
    finally:
        for p in restore:
            p.chmod(0o755)
    figure("sink_edge", case="read-only", exit=done.returncode)
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_line(done.stderr)
    assert line.startswith(f"taxi-assets: --sink / TAXI_ASSETS_SINK: {built}: the sink is not writable (")
    assert snapshot(built) == before


@pytest.mark.integration
def test_a_missing_bucket_under_materialize_is_exit_2(
    source: Path, s3_env, capsys: pytest.CaptureFixture[str], figure
) -> None:
    code = main(["materialize", "--partition", MONTH, "--source", str(source), "--sink", "s3://no-such-bucket/wh"])
    figure("sink_edge", case="missing bucket", exit=code)
    assert code == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("taxi-assets: --sink / TAXI_ASSETS_SINK: s3://no-such-bucket/wh: its bucket does not exist")


@pytest.mark.parametrize("command", ["status", "plan", "materialize", "run"])
def test_a_damaged_commit_in_the_log_is_exit_2_naming_the_file_and_nothing_is_written(
    source: Path, built: Path, command: str, figure
) -> None:
    # A partial copy of the sink (`aws s3 sync` cut short, a disk fault): the newest trips commit ends mid-line.
    # Before: `plan` said the month was fresh (it reads commitInfo lines only) and a run failed the month at its
    # commit, after writing its files, with delta-rs's message and a Rust backtrace, saying the next run retries.
    commit = built / "trips" / "_delta_log" / f"{0:020d}.json"
    commit.write_bytes(commit.read_bytes()[:-40])
    logs = {t: sorted(p.name for p in (built / t / "_delta_log").iterdir()) for t in ("trips", "quarantine")}
    args = ["--source", str(source), "--sink", str(built)]
    if command in ("materialize", "run"):
        args += ["--partition" if command == "materialize" else "--partitions", MONTH]
    done = cli(command, *args, cache=built.parent / "cache")
    figure("sink_edge", case=f"damaged log, {command}", exit=done.returncode)
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_line(done.stderr)
    assert line.startswith(
        f"taxi-assets: the Delta log of {built / 'trips'} is damaged: _delta_log/{0:020d}.json line "
    )
    assert "is not valid JSON" in line
    assert "restore that file" in line
    assert {t: sorted(p.name for p in (built / t / "_delta_log").iterdir()) for t in logs} == logs
