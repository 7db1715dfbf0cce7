"""A Prefect API that cannot be reached or started, said in one line (``ApiUnavailable``, exit 8).

``taxi-assets run`` talks to the API in ``PREFECT_API_URL`` or to the ephemeral one Prefect starts for it. When
that API is down, Prefect raises ``RuntimeError("Failed to reach API at ...")`` before the flow starts, or
``RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server ...")``, or an
``httpx`` transport error from a call to it; nothing has been written then. These are recognised here by
Prefect's own wording and by the URL of the failed request, so an ``httpx`` error from anything else stays a
bug with its traceback. Nothing here imports Prefect or httpx: only already-imported modules are consulted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Final
from urllib.parse import urlsplit

from taxi_assets.errors import ApiUnavailable

PREFECT_WORDS: Final = (
    "Failed to reach API at",
    "Timed out while attempting to connect to ephemeral Prefect API server",
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _request_url(exc: BaseException) -> str:
    try:
        return str(exc.request.url)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when the error has no request
        return ""


def _same_server(url: str, api_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(api_url)
    return bool(a.netloc) and (a.hostname, a.port) == (b.hostname, b.port)


def explain_api_error(exc: BaseException) -> ApiUnavailable | None:
    """The named error when ``exc`` says the run's Prefect API is unreachable or did not start; else None."""
    api_url = os.environ.get("PREFECT_API_URL", "")
    httpx = sys.modules.get("httpx")
    for err in _chain(exc):
        text = str(err).splitlines()[0] if str(err) else ""
        if isinstance(err, RuntimeError) and text.startswith(PREFECT_WORDS):
            return ApiUnavailable(api_url, text)
        if httpx is not None and isinstance(err, httpx.TransportError):
            url = _request_url(err)
            if api_url and _same_server(url, api_url):
                return ApiUnavailable(api_url, f"{type(err).__name__}: {text}")
    return None
