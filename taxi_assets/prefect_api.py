"""A Prefect API for one `taxi-assets run`, started the moment the run knows it has work.

With no ``PREFECT_API_URL``, Prefect starts its ephemeral API itself, but only when the flow first asks for a
client: after importing Prefect and the whole server application into this process (~2.5 s here), and then it
waits for the server's own start (~4 s: a uvicorn subprocess importing the API, checking the SQLite database's
migrations, starting the in-memory services) doing nothing else. :func:`launch` starts the same server (the command
and flags of Prefect's ``SubprocessASGIServer``, on the same ``PREFECT_HOME`` database; Prefect's application,
answering ``Retry-After: 0.1`` on its SQLite lock-ups: ``taxi_assets/_prefect_server``) before Prefect is even
imported, so its start overlaps this process's imports; :meth:`LaunchedApi.serve` then points
the flow, its tasks and the Dask workers at it with ``PREFECT_API_URL`` like any server, and stops it after Prefect's
log and event queues are drained into it.

Nothing changes when an API is configured (``PREFECT_API_URL`` in the environment, a profile, ``prefect.toml``):
:meth:`LaunchedApi.serve` sees it through Prefect's own settings and stops the launched server unused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

# Prefect's SubprocessASGIServer runs prefect.server.api.server:create_app; this is the same application, answering
# Retry-After on a 503 (a SQLite lock-up) so Prefect's client retries after 0.1 s, not 2 s (see the module there).
# PREFECT__SERVER_EPHEMERAL starts the services an ephemeral server needs (task run recorder, event persister...)
# and no UI. No block type registration at start (1.0 s of the server's 1.3 s start-up after its imports: it imports
# every installed collection to hash the block registry): it only upserts the block types and schemas installed
# collections ship, which `prefect server start`, `prefect block register` and every `Block.save()` also do; this
# run reads block documents (AwsCredentials, Secret), which exist only if saved, so their types are registered.
_APP_DIR: Final = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_prefect_server")
_APP_FACTORY: Final = "taxi_assets_prefect_app:create_app"
_SERVER_ENV: Final = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",  # else it still imports the collections to hash them
}
DEFAULT_STARTUP_TIMEOUT: Final = 180.0  # seconds; a fresh database's first migration on a busy 2-core machine
STOP_TIMEOUT: Final = 5.0  # seconds for a graceful stop before the server is killed, as Prefect does


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect_package_parent() -> str:
    """The directory holding the ``prefect`` package (uvicorn's ``--app-dir``), found without importing Prefect."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        from taxi_assets.errors import ApiUnavailable

        raise ApiUnavailable("", "the prefect package is not installed in this environment")
    return os.path.dirname(next(iter(spec.submodule_search_locations)))


@dataclass
class LaunchedApi:
    """A Prefect API server process this run started; :meth:`serve` uses it (or a configured API) and stops it."""

    process: subprocess.Popen[bytes] | None  # None: PREFECT_API_URL was in the environment, nothing launched
    port: int
    ready: bool = False  # it answered /api/health: something may have used it since

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait_ready(self, timeout: float) -> None:
        """Block until ``/api/health`` answers 200; :class:`ApiUnavailable` if the process dies or time runs out."""
        import urllib.error
        import urllib.request

        from taxi_assets.errors import ApiUnavailable  # here: `taxi-assets run` imports this module before the rest

        if self.process is None:
            raise ApiUnavailable(self.url, "no server was launched (PREFECT_API_URL is set)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ApiUnavailable(self.url, f"the Prefect API server exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        self.ready = True
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise ApiUnavailable(
            self.url,
            f"the Prefect API server did not answer within {timeout:g} s "
            "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS sets the wait)",
        )

    def stop(self) -> None:
        """Stop the server: gracefully (SIGTERM, killed after :data:`STOP_TIMEOUT` s) once used, else at once.

        A server still starting ignores SIGTERM until its start-up is over (measured: a stop 0.5-2 s after the
        launch waited the whole 5 s, then killed it), and one nobody has used has nothing to finish: a run that
        found nothing stale kills it. SQLite keeps its database whole if that lands inside a migration.
        """
        if self.process is not None and self.process.poll() is None:
            if not self.ready:
                self.process.kill()
                self.process.wait()
                return
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @contextlib.contextmanager
    def serve(self, *, timeout: float | None = None) -> Iterator[str]:
        """The Prefect API URL to use inside the block: the configured one if any, else this server's.

        Imports Prefect. When this server is used, ``PREFECT_API_URL`` points at it for the block (a Prefect
        settings context, which task runners hand to their tasks), and at the end Prefect's queued logs and
        events are sent before the server stops. The server stops on every way out.
        """
        from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

        try:
            configured = get_current_settings().api.url
            if configured:
                self.stop()
                yield configured
                return
            self.wait_ready(timeout if timeout is not None else startup_timeout())
            # No flow run heartbeats: they let a long-lived server mark the runs of a dead process Crashed, but
            # this server dies with this process; and each flow's end waits up to 1 s for the heartbeat thread.
            with temporary_settings(updates={PREFECT_API_URL: self.url, "flows.heartbeat_frequency": None}):
                try:
                    yield self.url
                finally:
                    _drain_prefect_queues()
        finally:
            self.stop()


def set_defaults() -> None:
    """Prefect settings this project's runs need unless the user set them: before a server is launched."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # The ephemeral API's first start migrates a fresh SQLite database: on a busy 2-core machine that can
    # exceed Prefect's 20 s default and fail the run for no reason.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")


def startup_timeout() -> float:
    """Prefect's own setting for its ephemeral server's start, read from the environment (else 180 s)."""
    raw = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "")
    return float(raw) if raw.strip() else DEFAULT_STARTUP_TIMEOUT


def launch() -> LaunchedApi:
    """Start a Prefect API server process on a free port and return at once (it starts in the background).

    Does not import Prefect, and launches nothing when ``PREFECT_API_URL`` is set in the environment (the
    common way to point at a server or Cloud; a profile's URL is only known once Prefect is imported). Its
    database is Prefect's (``PREFECT_HOME``/``PREFECT_API_DATABASE_*``), so runs stay visible to a later
    ``prefect server start`` on the same home, as with Prefect's ephemeral API.
    """
    if os.environ.get("PREFECT_API_URL"):
        return LaunchedApi(process=None, port=0)
    _prefect_package_parent()  # fail here, with the next step, when Prefect is not installed
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "--app-dir",
        _APP_DIR,
        "--factory",
        _APP_FACTORY,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "error",
        "--lifespan",
        "on",
    ]
    process = subprocess.Popen(cmd, env={**os.environ, **_SERVER_ENV})
    return LaunchedApi(process=process, port=port)


def _drain_prefect_queues() -> None:
    """Send the logs and events Prefect still queues (it does so at exit, when this server is gone)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for service in (APILogWorker, EventsWorker):
        service.drain_all(timeout=STOP_TIMEOUT)
