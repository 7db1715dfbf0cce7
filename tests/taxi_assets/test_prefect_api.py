"""The Prefect API of a bare `taxi-assets run`: launched before Prefect is imported, used only when no API is
configured, stopped on every way out; and a real stale run through the CLI on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from builders import write_months

from taxi_assets.errors import ApiUnavailable
from taxi_assets.prefect_api import LaunchedApi, launch


def test_a_configured_api_wins_and_the_launched_server_is_stopped(prefect_api: str) -> None:
    api = launch()
    with api.serve() as url:
        assert url.rstrip("/") == prefect_api.rstrip("/")
        assert api.process.poll() is not None  # stopped before the block runs: never used
    assert api.process.returncode is not None


def test_nothing_is_launched_when_the_environment_names_an_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    api = launch()
    assert api.process is None
    from prefect.settings import get_current_settings

    with api.serve() as url:
        assert url == get_current_settings().api.url  # the environment's, or the test harness's when it is active


def test_a_server_that_dies_is_reported_with_the_next_step() -> None:
    dead = LaunchedApi(process=subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]), port=9)
    dead.process.wait()
    with pytest.raises(ApiUnavailable, match="exited with code 3") as caught:
        dead.wait_ready(timeout=5)
    assert "PREFECT_API_URL" in str(caught.value)


@pytest.mark.slow
def test_a_stale_run_without_an_api_runs_on_the_launched_server(tmp_path: Path) -> None:
    source, sink = tmp_path / "source", tmp_path / "warehouse"
    write_months(str(source), ["2019-02"], rows=200)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    done = subprocess.run(
        [sys.executable, "-m", "taxi_assets", "run", "--source", str(source), "--sink", str(sink), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout[done.stdout.index("{") :])
    assert summary["stale"] == ["2019-02"]
    assert [r["ok"] for r in summary["results"]] == [True]
    assert summary["verified"]["2019-02"]["passed"] == summary["verified"]["2019-02"]["total"] > 0
    assert "Starting temporary server" not in done.stderr  # Prefect did not start a second, ephemeral one
    url = next(word for word in done.stderr.split() if word.startswith("http://127.0.0.1:"))
    with pytest.raises(urllib.error.URLError, match="refused"):  # the server stopped with the run
        urllib.request.urlopen(url.split("/runs/")[0] + "/api/health", timeout=2)


def test_the_launched_server_asks_for_a_quick_retry_on_a_sqlite_lock_up() -> None:
    """A 503 (Prefect's answer to "database is locked") gets Retry-After: 0.1, so the client retries in 0.1 s, not
    2 s; other answers, and a 503 that already says when to retry, pass unchanged."""
    import asyncio

    from taxi_assets._prefect_server.taxi_assets_prefect_app import with_retry_after

    def answer(status: int, headers: list[tuple[bytes, bytes]]):
        async def app(scope, receive, send) -> None:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"{}"})

        return app

    def headers_sent(app, scope_type: str = "http") -> dict[bytes, bytes]:
        sent: list[dict] = []

        async def send(message) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request"}

        asyncio.run(with_retry_after(app)({"type": scope_type}, receive, send))
        return dict(sent[0]["headers"])

    assert headers_sent(answer(503, [(b"content-type", b"application/json")]))[b"retry-after"] == b"0.1"
    assert headers_sent(answer(503, [(b"Retry-After", b"7")])) == {b"Retry-After": b"7"}
    assert b"retry-after" not in headers_sent(answer(200, []))
    assert b"retry-after" not in headers_sent(answer(503, []), scope_type="websocket")
