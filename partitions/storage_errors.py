"""Decide, in one place, whether an exception means the *store* failed rather than the data being wrong.

Three clients talk to the store, and each says "the store failed" its own way:

================ =================================================================================================
client           what it raises
================ =================================================================================================
pyarrow ``fs``   ``OSError("... AWS Error <CODE> [(HTTP status <n>)] during <Op> operation: ...")``; a cut network
(source reads,   is ``NETWORK_CONNECTION`` with a ``curlCode``; throttling ``SLOW_DOWN``/``THROTTLING``; a 5xx
data files)      ``INTERNAL_FAILURE``/``SERVICE_UNAVAILABLE`` or ``UNKNOWN (HTTP status 5xx)``; refused
                 credentials ``ACCESS_DENIED``, ``INVALID_ACCESS_KEY_ID``, ``SIGNATURE_DOES_NOT_MATCH`` ...
delta-rs         ``OSError`` or ``deltalake.exceptions.DeltaError`` carrying object_store's text: ``error sending
(commits, table  request``, ``... after 10 retries``, ``Server returned non-2xx status code ↳ 503 ...``; refused
loads)           credentials ``403 Forbidden`` or ``lacked the necessary privileges``
s3fs / botocore  s3fs turns a ``ClientError`` into ``PermissionError`` (403, ``AccessDenied``, ``InvalidAccessKeyId``
(listing, log    ...) or an ``OSError`` whose ``__cause__`` is the ``ClientError`` (``SlowDown``, ``InternalError``,
reads)           503 as ``EBUSY``, 500 as ``EREMOTEIO``); a dead endpoint is botocore's ``EndpointConnectionError``
                 / ``ConnectTimeoutError`` / ``ReadTimeoutError``, which are *not* ``OSError``; missing
                 credentials are ``NoCredentialsError``
================ =================================================================================================

:func:`classify_storage_error` maps all of them to one :class:`StorageFailure`:

* ``unavailable``: a cut or refused connection, a timeout, throttling, a 5xx (after the client's own retries).
  A later retry may pass, so callers raise :class:`~partitions.errors.StorageUnavailable` (``Transient``);
* ``denied``: the credentials or their rights were refused (401/403 and the credential error codes, no
  credentials at all, a local ``PermissionError``). A retry gets the same answer, so callers raise
  :class:`~partitions.errors.StorageAccessDenied`, which is not transient and says what to check;
* ``rejected``: the store answered another error (a 4xx such as a bad request or a missing bucket, an unknown
  AWS code). Not the data's fault, not worth a retry; writers let it through with its traceback.

``FileNotFoundError`` (s3fs's 404) is none of these: a missing object is an answer callers handle. Botocore and
aiohttp exceptions are recognised by class name, so this module needs neither installed. The ``reason`` of a
failure is built only from error codes, HTTP statuses and class names, never from the exception's text, so no
URL with a query string, header or key can reach a message through it.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit, urlunsplit

from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from partitions._storage import delta_storage_options
from partitions.errors import PartitionsError, StorageAccessDenied, StorageUnavailable, TableLogDamaged

FailureKind = Literal["unavailable", "denied", "rejected"]

# delta-rs's words for a log it could not parse (a commit that is not JSON, a checkpoint that is not Parquet)
_LOG_DAMAGE = re.compile(r"json error|invalid json|failed to parse|parquet error|unexpected end", re.IGNORECASE)
# pyarrow's S3 error codes (Aws::S3::S3Errors / Aws::Client::CoreErrors names), upper case as pyarrow prints them.
_AWS_ERROR = re.compile(r"AWS Error ([A-Z_]+)(?: \(HTTP status (\d{3})\))? during (\w+) operation")
_PYARROW_DENIED: Final = frozenset(
    (
        "ACCESS_DENIED INVALID_ACCESS_KEY_ID SIGNATURE_DOES_NOT_MATCH EXPIRED_TOKEN INVALID_CLIENT_TOKEN_ID "
        "MISSING_AUTHENTICATION_TOKEN UNRECOGNIZED_CLIENT INVALID_SIGNATURE INCOMPLETE_SIGNATURE"
    ).split()
)
_PYARROW_UNAVAILABLE: Final = frozenset(
    (
        "NETWORK_CONNECTION INTERNAL_FAILURE SERVICE_UNAVAILABLE SLOW_DOWN THROTTLING REQUEST_TIMEOUT "
        "REQUEST_TIMEOUT_EXCEPTION REQUEST_LIMIT_EXCEEDED"
    ).split()
)
# S3 / STS error codes as botocore reports them (``ClientError.response["Error"]["Code"]``).
_BOTO_DENIED: Final = frozenset(
    (
        "AccessDenied AccountProblem AllAccessDisabled InvalidAccessKeyId SignatureDoesNotMatch ExpiredToken "
        "ExpiredTokenException InvalidToken InvalidClientTokenId UnrecognizedClientException NotSignedUp "
        "RequestTimeTooSkewed 401 403"
    ).split()
)
_BOTO_UNAVAILABLE: Final = frozenset(
    (
        "SlowDown ServiceUnavailable InternalError RequestTimeout Throttling ThrottlingException "
        "RequestLimitExceeded TooManyRequestsException OperationAborted"
    ).split()
)
_BOTO_CONNECTION_CLASSES: Final = frozenset(  # botocore and aiohttp; none is an OSError
    (
        "EndpointConnectionError ConnectTimeoutError ReadTimeoutError ConnectionClosedError HTTPClientError "
        "ProxyConnectionError ClientConnectionError ClientConnectorError ServerDisconnectedError "
        "ServerTimeoutError ClientPayloadError"
    ).split()
)
_BOTO_CREDENTIAL_CLASSES: Final = frozenset(
    "NoCredentialsError PartialCredentialsError CredentialRetrievalError TokenRetrievalError".split()
)
_UNAVAILABLE_ERRNOS: Final = frozenset(
    {errno.EBUSY, getattr(errno, "EREMOTEIO", errno.EIO), errno.ETIMEDOUT, errno.ECONNREFUSED, errno.ECONNRESET}
)
# object_store (delta-rs) prints the status it got after "non-2xx status code", then the body.
_STATUS = re.compile(r"non-2xx status code.{0,80}?\b([1-5]\d\d)\b", re.DOTALL)
_RETRIES = re.compile(r"after (\d+) retries")
_DELTA_DENIED: Final = ("lacked the necessary privileges", "not authenticated", "unauthenticated", "access denied")
_DELTA_UNAVAILABLE: Final = (
    "error sending request",
    "connection refused",
    "connection reset",
    "connection closed",
    "connection",
    "timed out",
    "timeout",
    "service unavailable",
    "slow down",
    "slowdown",
    "internal error",
    "internal server error",
    "broken pipe",
)
_CODE = re.compile(r"[A-Za-z0-9_.]{1,64}")


@dataclass(frozen=True, slots=True)
class StorageFailure:
    """What kind of store failure an exception is, and a short reason safe to print (codes, statuses, names)."""

    kind: FailureKind
    reason: str


def classify_storage_error(exc: BaseException) -> StorageFailure | None:
    """The store failure ``exc`` stands for, or None when it is something else (bad data, a bug, a 404).

    Our own ``PartitionsError`` is never a store failure (it was classified where it was raised), nor is a
    ``FileNotFoundError`` (a 404 is an answer: the caller knows whether a missing object is normal).
    """
    if isinstance(exc, PartitionsError | FileNotFoundError):
        return None
    name = type(exc).__name__
    found = _from_client_error(exc) or _from_client_error(exc.__cause__)
    if found is not None:
        return found
    if isinstance(exc, PermissionError):
        return StorageFailure("denied", f"{name}")
    if _named(exc, _BOTO_CREDENTIAL_CLASSES):
        return StorageFailure("denied", f"{name}: no usable credentials")
    if isinstance(exc, ConnectionError | TimeoutError) or _named(exc, _BOTO_CONNECTION_CLASSES):
        return StorageFailure("unavailable", name)
    if not isinstance(exc, OSError | DeltaError):
        return None
    text = str(exc)
    if match := _AWS_ERROR.search(text):
        return _from_pyarrow(name, match)
    if found := _from_object_store(name, text):
        return found
    code = exc.errno if isinstance(exc, OSError) else None
    if code is not None and code in _UNAVAILABLE_ERRNOS:
        return StorageFailure("unavailable", f"{name}: {errno.errorcode.get(code, str(code))}")
    return None


def is_storage_unavailable(exc: BaseException) -> bool:
    """The store did not answer in a way a later retry may fix (see :func:`classify_storage_error`)."""
    found = classify_storage_error(exc)
    return found is not None and found.kind == "unavailable"


def named_storage_error(
    exc: BaseException, uri: str, partition: str = ""
) -> StorageUnavailable | StorageAccessDenied | None:
    """``exc`` as the named error a caller should raise (``from exc``), or None to let it through as it is.

    ``uri`` is shown without any ``user:password@`` part; ``partition`` is empty for table-wide operations.
    """
    found = classify_storage_error(exc)
    if found is None or found.kind == "rejected":
        return None
    shown = display_uri(uri)
    if found.kind == "denied":
        return StorageAccessDenied(shown, partition, found.reason)
    return StorageUnavailable(shown, partition, found.reason)


@contextmanager
def storage_errors_named(uri: str, partition: str = "") -> Iterator[None]:
    """Raise store failures inside the block as ``StorageUnavailable`` / ``StorageAccessDenied``.

    Everything else, our own errors included, passes through unchanged; the client's exception stays chained.
    """
    try:
        yield
    except PartitionsError:
        raise
    except Exception as exc:
        named = named_storage_error(exc, uri, partition)
        if named is None:
            raise
        raise named from exc


def open_table(
    table_uri: str,
    *,
    version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
    partition: str = "",
) -> DeltaTable:
    """``DeltaTable(table_uri)``, with a refused or unreachable store as a named error instead of an OSError.

    The store's waits are bounded (``_storage.delta_storage_options``): a silent endpoint raises
    ``StorageUnavailable`` in about ``3 x PARTITIONS_NETWORK_TIMEOUT`` instead of delta-rs's 3 minutes.
    """
    options = delta_storage_options(table_uri, storage_options)
    with storage_errors_named(table_uri, partition):
        try:
            return DeltaTable(table_uri, version=version, storage_options=options)
        except DeltaError as exc:
            said = str(exc).split("\n", 1)[0].strip()  # delta-rs may append a Rust backtrace
            if not _LOG_DAMAGE.search(said):
                raise
            from partitions.delta_log import damaged_commit  # it reads the log through this module

            where, reason = damaged_commit(table_uri, storage_options=storage_options)
            detail = reason or f"delta-rs: {said}"
            raise TableLogDamaged(display_uri(table_uri), partition, detail, where) from None


def display_uri(uri: str) -> str:
    """``uri`` without a ``user:password@`` part, the one place a URI could carry a credential."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


# -- one function per client -------------------------------------------------------------------------


def _named(exc: BaseException, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in type(exc).__mro__)


def _from_client_error(exc: BaseException | None) -> StorageFailure | None:
    """A botocore ``ClientError`` (raised, or the ``__cause__`` s3fs keeps): its S3 error code and HTTP status."""
    response: Any = getattr(exc, "response", None)
    if exc is None or not isinstance(response, Mapping) or not isinstance(response.get("Error"), Mapping):
        return None
    raw_code = str(response["Error"].get("Code", ""))
    code = raw_code if _CODE.fullmatch(raw_code) else "?"
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    operation = getattr(exc, "operation_name", None)
    reason = f"{operation or 'request'}: {code}" + (f" (HTTP {status})" if status else "")
    if code in _BOTO_DENIED or status in (401, 403):
        return StorageFailure("denied", reason)
    if code in _BOTO_UNAVAILABLE or _transient_status(status):
        return StorageFailure("unavailable", reason)
    return StorageFailure("rejected", reason)


def _from_pyarrow(name: str, match: re.Match[str]) -> StorageFailure:
    code, status, operation = match[1], match[2], match[3]
    reason = f"{operation}: {code}" + (f" (HTTP {status})" if status else "")
    http = int(status) if status else None
    if code in _PYARROW_DENIED or http in (401, 403):
        return StorageFailure("denied", reason)
    if code in _PYARROW_UNAVAILABLE or _transient_status(http):
        return StorageFailure("unavailable", reason)
    return StorageFailure("rejected", reason)


def _from_object_store(name: str, text: str) -> StorageFailure | None:
    """delta-rs: object_store's status line and words; None when the text names no store failure."""
    lowered = " ".join(text.lower().split())
    retries = f" after {m[1]} retries" if (m := _RETRIES.search(lowered)) else ""
    if status_match := _STATUS.search(text):
        status = int(status_match[1])
        reason = f"{name}: HTTP {status}{retries}"
        if status in (401, 403):
            return StorageFailure("denied", reason)
        return StorageFailure("unavailable" if _transient_status(status) else "rejected", reason)
    if word := next((w for w in _DELTA_DENIED if w in lowered), None):
        return StorageFailure("denied", f"{name}: {word}")
    if word := next((w for w in _DELTA_UNAVAILABLE if w in lowered), None):
        return StorageFailure("unavailable", f"{name}: {word}{retries}")
    return None


def _transient_status(status: int | None) -> bool:
    return status is not None and (status >= 500 or status in (408, 429))
