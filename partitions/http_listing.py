"""List the months of an HTTP(S) source by probing a URL template, one HEAD per month.

A web server cannot be listed, so each wanted month is asked for: 200 is a file (fingerprint: ETag, else
Last-Modified, and the length), 403/404/410 "not published". The source degrades per month, not as a whole: a
5xx, 408, 429, a timeout or a connection error is retried with jittered backoff, and a month still unanswered is
reported in ``Listing.unavailable`` while the others are listed. Only a server that answers none of the first
probes (a dead or silent host) fails the listing, in about ``attempts x timeout``. Readers fetch parts of files,
so the server must honour Range requests; one that sends whole files is a named error, not bad bytes.
"""

from __future__ import annotations

import random
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final

from partitions._storage import NETWORK_ATTEMPTS, network_timeout
from partitions.errors import SourceListingError, SourceRangeUnsupported, StorageUnavailable
from partitions.keys import MonthlyPartitions, parse_month
from partitions.source import Listing, SkippedFile, SourceFile
from partitions.storage_errors import display_uri

_HTTP_NOT_PUBLISHED: Final = (403, 404, 410)
_MAX_BACKOFF: Final = 8.0


def list_http(
    template: str,
    keys: Iterable[str],
    *,
    partitions: MonthlyPartitions | None = None,
    timeout: float | None = None,
    attempts: int = NETWORK_ATTEMPTS,
    backoff: float = 0.5,
    max_workers: int = 8,
    check_ranges: bool = True,
) -> Listing:
    """HEAD ``template.format(key=k)`` for each key: 200 is a file, 403/404/410 "not published" (skipped).

    A 5xx, 408, 429, a timeout or a connection error is retried, ``attempts`` tries in all, waiting between
    ``backoff/2`` and ``backoff`` seconds before the second, twice that before the third, ... (capped at 8 s).
    A month still unanswered goes to ``Listing.unavailable`` with the last error; the others are listed. When
    the server answers none of the first ``max_workers`` probes at all (a dead or silent host), the rest are not
    tried and ``SourceListingError`` is raised: the whole source is down, not a month. A 5xx is an answer.

    With ``check_ranges`` the first file found must show Range support (``Accept-Ranges: bytes``, else a ranged
    GET answering 206): readers fetch parts of files, and a server that sends the whole file instead would have
    every month blamed on its bytes.

    Raises:
        SourceListingError: no probe got an answer (transient).
        SourceRangeUnsupported: the server ignores Range requests.
    """
    wanted = sorted({parse_month(k) for k in ([keys] if isinstance(keys, str) else keys)})
    if partitions is not None:
        wanted = [k for k in wanted if partitions.contains(k)]
    seconds = network_timeout(timeout)
    workers = max(1, max_workers)

    def probe(key: str) -> _Probe:
        return _head(template.format(key=key), key, seconds, attempts=max(1, attempts), backoff=backoff)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # The first batch alone, then the rest: a host that answers none of the first probes is down, and
        # probing 80 more months at attempts x timeout each would only make the operator wait.
        outcomes = list(pool.map(probe, wanted[:workers]))
        if outcomes and not any(o.answered for o in outcomes):
            raise SourceListingError(
                display_uri(template),
                f"no answer for any of the first {len(outcomes)} month(s) probed: {outcomes[0].unavailable}",
            )
        outcomes += pool.map(probe, wanted[workers:])
    files = {o.key: o.file for o in outcomes if o.file is not None}
    if check_ranges and files:
        first = next(o for o in outcomes if o.file is not None)
        _check_ranges(first.url, first.accept_ranges, seconds, attempts=1, backoff=backoff, strict=False)
    return Listing(
        files=files,
        skipped=tuple(o.skipped for o in outcomes if o.skipped is not None),
        unavailable={o.key: o.unavailable for o in outcomes if o.unavailable is not None},
    )


def require_range_support(
    url: str, *, timeout: float | None = None, attempts: int = NETWORK_ATTEMPTS, backoff: float = 0.5
) -> None:
    """Check, before reading ``url``, that its server answers and honours Range requests.

    One ``Range: bytes=0-0`` GET, retried like a HEAD. Without it, fsspec reports a silent server as a missing
    file and a server that ignores ranges as unreadable bytes, and the month would be blamed on its file.

    Raises:
        SourceRangeUnsupported: the server answered 200 with the whole file instead of 206.
        StorageUnavailable: the server did not answer (timeouts, refused connections, 5xx after the retries);
            transient, and it names the URL.
    """
    _check_ranges(url, None, network_timeout(timeout), attempts=max(1, attempts), backoff=backoff, strict=True)


@dataclass(frozen=True)
class _Probe:
    """What probing one month found: exactly one of a file, a skip, or the reason it went unanswered."""

    key: str
    url: str
    file: SourceFile | None = None
    skipped: SkippedFile | None = None
    unavailable: str | None = None
    answered: bool = True  # the server sent an HTTP answer (even an error); False: timeouts, no connection
    accept_ranges: str | None = None


@dataclass(frozen=True)
class _Answer:
    """The outcome of one request after its retries: the final status, or why there was none."""

    status: int  # the last HTTP status; 0 when the last attempt got no answer
    headers: Any = None
    reason: str = ""  # the last failure in words ("HTTP 503 Service Unavailable", "TimeoutError: timed out")
    answered: bool = True  # any attempt got an HTTP answer
    exhausted: bool = False  # every attempt failed in a way worth retrying


def _ask(request: urllib.request.Request, timeout: float, *, attempts: int, backoff: float) -> _Answer:
    """Send ``request`` up to ``attempts`` times; 5xx/408/429, timeouts and connection errors are retried."""
    status, reason, answered = 0, "", False
    for attempt in range(attempts):
        if attempt:
            _sleep_backoff(backoff, attempt)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return _Answer(response.status, response.headers)
        except urllib.error.HTTPError as exc:
            status, reason, answered = exc.code, f"HTTP {exc.code} {exc.reason}", True
            if not (exc.code >= 500 or exc.code in (408, 429)):
                return _Answer(status, exc.headers, reason)
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            status = 0
            reason = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause)
    tries = f"{attempts} attempt{'s' if attempts != 1 else ''} of up to {timeout:g} s"
    return _Answer(status, None, f"{reason} ({tries})", answered=answered, exhausted=True)


def _head(url: str, key: str, timeout: float, *, attempts: int, backoff: float) -> _Probe:
    """HEAD ``url``: a file, "not published", or unavailable with the last error."""
    answer = _ask(urllib.request.Request(url, method="HEAD"), timeout, attempts=attempts, backoff=backoff)
    if answer.exhausted:
        return _Probe(key, url, unavailable=f"HEAD {display_uri(url)}: {answer.reason}", answered=answer.answered)
    if answer.status in _HTTP_NOT_PUBLISHED:
        return _Probe(key, url, skipped=_not_published(url, answer.status))
    if answer.status >= 400:
        return _Probe(key, url, unavailable=f"HEAD {display_uri(url)} answered {answer.reason}")
    headers = answer.headers
    return _Probe(key, url, file=_http_file(url, key, headers), accept_ranges=headers.get("Accept-Ranges"))


def _not_published(url: str, code: int) -> SkippedFile:
    return SkippedFile(url, f"not published (HTTP {code})", "not published (HTTP 403/404/410)")


def _sleep_backoff(backoff: float, attempt: int) -> None:
    """Wait between half and all of ``backoff x 2^(attempt-1)`` (capped): retries of many months spread out."""
    ceiling = min(_MAX_BACKOFF, backoff * 2 ** (attempt - 1))
    time.sleep(ceiling / 2 + random.uniform(0, ceiling / 2))


def _http_file(url: str, key: str, headers: Any) -> SourceFile:
    size = int(headers.get("Content-Length") or 0)
    modified = _http_date(headers.get("Last-Modified"))
    if etag := headers.get("ETag"):
        fingerprint = f"etag:{etag}/size:{size}"
    else:
        fingerprint = f"last-modified:{headers.get('Last-Modified', '')}/size:{size}"
    return SourceFile(key, url, size, fingerprint, modified)


def _check_ranges(
    url: str, accept_ranges: str | None, timeout: float, *, attempts: int, backoff: float, strict: bool
) -> None:
    """Trust the HEAD's ``Accept-Ranges`` (``bytes`` or ``none``); otherwise ask for one byte, require 206.

    ``strict``: a server that does not answer raises ``StorageUnavailable``; otherwise it is not judged here.
    Other answers (a 404: the file went since it was listed) are left to the read that follows.
    """
    said = (accept_ranges or "").strip().lower()
    if said == "bytes":
        return
    if said == "none":
        raise SourceRangeUnsupported(display_uri(url), "its HEAD answered Accept-Ranges: none")
    request = urllib.request.Request(url, headers={"Range": "bytes=0-0"})
    answer = _ask(request, timeout, attempts=attempts, backoff=backoff)
    if answer.exhausted:
        if strict:
            raise StorageUnavailable(display_uri(url), "", f"GET bytes=0-0: {answer.reason}")
        return
    if answer.status == 200:
        evidence = "a GET for bytes=0-0 answered 200 instead of 206 Partial Content"
        raise SourceRangeUnsupported(display_uri(url), evidence)


def _http_date(value: str | None) -> datetime | None:
    try:
        return parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError):
        return None
