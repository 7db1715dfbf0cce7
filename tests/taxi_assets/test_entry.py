"""`taxi-assets` (taxi_assets.entry): `run` launches its Prefect API server first; every way out stops it."""

from __future__ import annotations

import signal

import pytest
from builders import write_months

from taxi_assets import cli, entry
from taxi_assets import prefect_api as api_module
from taxi_assets.prefect_api import LaunchedApi


@pytest.mark.parametrize(
    ("argv", "command"),
    [(["--debug", "run", "--json"], "run"), (["plan", "--json"], "plan"), (["--debug"], None), ([], None)],
)
def test_the_command_is_the_first_word_that_is_not_an_option(argv, command):
    assert entry.command_of(argv) == command


@pytest.fixture
def launches(tmp_path, monkeypatch) -> list[LaunchedApi]:
    """Every server `taxi-assets run` launches (real processes); the CLI itself must not launch another."""
    monkeypatch.setenv("TAXI_ASSETS_SOURCE", str(tmp_path / "source"))
    monkeypatch.setenv("TAXI_ASSETS_SINK", str(tmp_path / "warehouse"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    launched: list[LaunchedApi] = []
    real_launch = api_module.launch

    def launch() -> LaunchedApi:
        launched.append(real_launch())
        return launched[-1]

    def second_launch() -> LaunchedApi:
        raise AssertionError("the CLI launched a second Prefect API server")

    monkeypatch.setattr(api_module, "launch", launch)
    monkeypatch.setattr(cli, "launch_prefect_api", second_launch)
    return launched


def test_a_run_with_nothing_stale_stops_the_server_launched_first_unused(tmp_path, capsys, launches):
    write_months(str(tmp_path / "source"), ["2019-02"], rows=100)
    assert cli.main(["materialize", "--partition", "2019-02"]) == 0
    assert launches == []  # only `run` launches one
    capsys.readouterr()

    assert entry.main(["run"]) == 0
    assert "Nothing stale" in capsys.readouterr().out
    (api,) = launches
    assert api.process is not None
    assert api.process.poll() is not None, "the server launched first was stopped before the command returned"
    assert not api.ready
    assert api.process.returncode == -signal.SIGKILL, "killed at once: a starting server ignores SIGTERM for seconds"


def test_a_run_with_work_uses_the_server_launched_first(tmp_path, capsys, launches, prefect_api):
    write_months(str(tmp_path / "source"), ["2019-02"], rows=100)
    assert entry.main(["run", "--json"]) == 0  # `second_launch` fails the run if the CLI launched its own
    assert '"stale": [\n    "2019-02"\n  ]' in capsys.readouterr().out
    (api,) = launches
    assert api.process is not None
    assert api.process.poll() is not None


def test_a_server_once_used_is_stopped_gracefully():
    api = api_module.launch()
    api.wait_ready(timeout=120)
    api.stop()
    assert api.ready
    assert api.process is not None
    assert api.process.returncode != -signal.SIGKILL, "SIGTERM: it drains its services and closes its database"


def test_a_bad_command_line_still_stops_the_server(launches):
    with pytest.raises(SystemExit):
        entry.main(["run", "--no-such-option"])
    (api,) = launches
    assert api.process is not None
    assert api.process.poll() is not None
