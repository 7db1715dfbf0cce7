"""Prefect's API application for the private server of `taxi-assets run`, answering "retry soon" to SQLite lock-ups.

Prefect's SQLite server answers ``503`` when a request's transaction read the database and then could not write
because another writer committed in between (``SQLITE_BUSY_SNAPSHOT``: WAL mode, ``busy_timeout`` does not apply).
The task run recorder writes every task state event the moment it arrives, so a flow's next API call (the subflow's
task run, the month's concurrency slot) collides with it in about half of the runs. A retry succeeds at once (it
reads the new snapshot), but Prefect's client waits ``2**1`` s plus jitter unless the answer carries ``Retry-After``.
This application is Prefect's own (``prefect.server.api.server:create_app``, what ``SubprocessASGIServer`` runs) with
one change: a ``503`` without ``Retry-After`` gets ``Retry-After: 0.1``. Nothing else is touched: same routes, same
database, same services, same ``503`` (a request that keeps failing still fails after the client's retries).

It lives alone in this directory, which uvicorn puts on ``sys.path`` (``--app-dir``), so the server process imports
neither the ``taxi_assets`` package nor its data stack: it depends on Prefect only. Used only for the server
``taxi_assets.prefect_api.launch`` starts; a configured server is never changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_SECONDS: Final = "0.1"  # a busy snapshot clears with the other writer's commit: milliseconds


def with_retry_after(app: App, seconds: str = RETRY_AFTER_SECONDS) -> App:
    """``app`` with ``Retry-After: seconds`` added to every HTTP ``503`` answer that has none (ASGI middleware)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets pass through untouched
            await app(scope, receive, send)
            return

        async def send_with_retry_after(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"retry-after" for name, _ in headers):
                    headers.append((b"retry-after", seconds.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_retry_after)

    return wrapped


def create_app() -> App:
    """Prefect's server application (the one its ephemeral server runs), with :func:`with_retry_after`."""
    from prefect.server.api.server import create_app as create_prefect_app

    return with_retry_after(create_prefect_app())
