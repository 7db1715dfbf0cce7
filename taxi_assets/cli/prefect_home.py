"""Refuse, in one line, a Prefect home where the ephemeral API cannot keep its database.

Without ``PREFECT_API_URL`` Prefect starts an API server of its own for the run, with a SQLite database under
``PREFECT_HOME`` (``~/.prefect``). Prefect creates that directory, but not its parents; when it cannot, each API
server it starts fails, and Prefect tries the next port until its start-up timeout, printing every failure.
So a run checks the database's directory first, from Prefect's own settings (the profile, the environment):
it must exist, or be creatable in an existing directory, and be writable. A database elsewhere (PostgreSQL)
or an API given by URL is not this check's business.
"""

from __future__ import annotations

import os
from pathlib import Path

from taxi_assets.errors import PrefectHomeUnusable

_SQLITE_PREFIXES = ("sqlite+aiosqlite:///", "sqlite:///")


def preflight_prefect_home() -> None:
    """Raise :class:`PrefectHomeUnusable` when the ephemeral API's SQLite database cannot be created."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if settings.api.url:
        return
    url = settings.server.database.connection_url
    text = url.get_secret_value() if url is not None else ""
    prefix = next((p for p in _SQLITE_PREFIXES if text.startswith(p)), None)
    if prefix is None or ":memory:" in text:
        return
    database = Path(text[len(prefix) :].split("?", 1)[0])
    problem = _unusable(database.parent)
    if problem:
        raise PrefectHomeUnusable(str(settings.home), str(database), problem)


def _unusable(folder: Path) -> str:
    """Why no file can be created in ``folder`` (empty when one can, or when Prefect can create ``folder``)."""
    for part in (folder, *folder.parents):
        if not part.exists():
            continue
        if not part.is_dir():
            return f"{part} is a file, not a directory"
        if part not in (folder, folder.parent):  # Prefect makes the home, not the directories above it
            return f"{folder.parent} does not exist"
        if not os.access(part, os.W_OK | os.X_OK):
            return f"{part} is not writable"
        return ""
    return f"{folder.parent} does not exist"
