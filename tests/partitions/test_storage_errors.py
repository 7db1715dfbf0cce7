"""The one classifier of store failures, on the exceptions each client really raises.

botocore and s3fs exceptions are built by those libraries themselves (``ClientError`` from a response dict,
``translate_boto_error`` as s3fs calls it); pyarrow's and delta-rs's are the texts they printed against the
test S3 server behind the fault proxy (``tests/reliability``), where the same cases run end to end.
"""

import pickle

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from deltalake.exceptions import DeltaError
from s3fs.errors import translate_boto_error

from partitions.errors import CommitConflictExhausted, StorageAccessDenied, StorageUnavailable, Transient
from partitions.storage_errors import (
    classify_storage_error,
    display_uri,
    is_storage_unavailable,
    named_storage_error,
    storage_errors_named,
)

SECRET = "wrong-secret-Kq7PzX4vB2"


def client_error(code: str, status: int, operation: str = "HeadObject") -> ClientError:
    response = {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def s3fs_error(code: str, status: int) -> BaseException:
    """What s3fs raises for a ClientError: a Python OSError with the ClientError as its cause."""
    return translate_boto_error(client_error(code, status))


def pyarrow_error(code: str, operation: str = "HeadObject", status: int | None = None) -> OSError:
    http = f" (HTTP status {status})" if status else ""
    return OSError(
        f"When reading information for key 't/a.bin' in bucket 'b': AWS Error {code}{http} during {operation} "
        "operation: No response body."
    )


def delta_rs_error(status_line: str, retries: str = "") -> OSError:
    return OSError(
        "Kernel error -> Generic S3 error\n          \x1b[31m↳\x1b[0m Error performing GET "
        f"http://127.0.0.1:34585/b/t/_delta_log/_last_checkpoint in 3.4s{retries} - Server returned non-2xx "
        f"status code\n             \x1b[31m↳\x1b[0m {status_line}\n <?xml ...>"
    )


UNAVAILABLE = {
    "pyarrow cut network": OSError(
        "When initiating multiple part upload for key 't/c.bin' in bucket 'b': AWS Error NETWORK_CONNECTION during "
        "CreateMultipartUpload operation: curlCode: 7, Could not connect to server"
    ),
    "pyarrow 503 SlowDown": pyarrow_error("SLOW_DOWN", "CreateMultipartUpload"),
    "pyarrow 500 InternalError": pyarrow_error("INTERNAL_FAILURE", "UploadPart"),
    "pyarrow HEAD 503": pyarrow_error("UNKNOWN", status=503),
    "delta-rs 500 after retries": delta_rs_error("500 Internal Server Error", ", after 10 retries"),
    "delta-rs connect refused": OSError(
        "Kernel error -> Generic S3 error ... after 10 retries, max_retries 10 - HTTP error\n error sending request\n"
        " client error (Connect)\n tcp connect error: Connection refused (os error 111)"
    ),
    "delta-rs DeltaError timeout": DeltaError("Failed to read delta log object: Generic S3 error: operation timed out"),
    "s3fs 503 (EBUSY)": s3fs_error("503", 503),
    "s3fs SlowDown": s3fs_error("SlowDown", 503),
    "s3fs 500 (EREMOTEIO)": s3fs_error("InternalError", 500),
    "botocore endpoint refused": EndpointConnectionError(endpoint_url="http://127.0.0.1:1/b/t"),
    "botocore connect timeout": ConnectTimeoutError(endpoint_url="http://127.0.0.1:1/b/t"),
    "botocore read timeout": ReadTimeoutError(endpoint_url="http://127.0.0.1:1/b/t"),
    "python connection reset": ConnectionResetError(104, "Connection reset by peer"),
    "python timeout": TimeoutError("timed out"),
}
DENIED = {
    "pyarrow ACCESS_DENIED": pyarrow_error("ACCESS_DENIED"),
    "pyarrow INVALID_ACCESS_KEY_ID": pyarrow_error("INVALID_ACCESS_KEY_ID", "CreateMultipartUpload"),
    "pyarrow HEAD 403": pyarrow_error("UNKNOWN", status=403),
    "delta-rs 403": delta_rs_error("403 Forbidden"),
    "delta-rs privileges": OSError("Kernel error -> The operation lacked the necessary privileges to complete"),
    "s3fs 403 (PermissionError)": s3fs_error("403", 403),
    "s3fs InvalidAccessKeyId": s3fs_error("InvalidAccessKeyId", 403),
    "s3fs SignatureDoesNotMatch": s3fs_error("SignatureDoesNotMatch", 403),
    "botocore no credentials": NoCredentialsError(),
    "local PermissionError": PermissionError(13, "Permission denied"),
}
NOT_STORE_FAILURES = {
    "parquet magic bytes": OSError("Parquet magic bytes not found in footer. Either the file is corrupted or this is"),
    "page checksum": OSError("could not verify page integrity, CRC checksum verification failed"),
    "s3fs 404 (FileNotFoundError)": s3fs_error("NoSuchKey", 404),
    "a bug": ValueError("connection"),  # the words count only on OSError / DeltaError
    "our own error": CommitConflictExhausted("s3://b/t", "2019-02", 5),
    "delta-rs conflict": DeltaError("Transaction failed: version already exists"),
}


@pytest.mark.parametrize("exc", UNAVAILABLE.values(), ids=UNAVAILABLE.keys())
def test_a_store_that_does_not_answer_is_unavailable(exc):
    found = classify_storage_error(exc)
    assert getattr(found, "kind", None) == "unavailable", found
    assert is_storage_unavailable(exc)
    named = named_storage_error(exc, "s3://b/t", "2019-02")
    assert isinstance(named, StorageUnavailable)
    assert isinstance(named, Transient)


@pytest.mark.parametrize("exc", DENIED.values(), ids=DENIED.keys())
def test_refused_credentials_are_denied_and_not_transient(exc):
    found = classify_storage_error(exc)
    assert getattr(found, "kind", None) == "denied", found
    named = named_storage_error(exc, "s3://b/t")
    assert isinstance(named, StorageAccessDenied)
    assert not isinstance(named, Transient)
    assert named.exit_code == 2


@pytest.mark.parametrize("exc", NOT_STORE_FAILURES.values(), ids=NOT_STORE_FAILURES.keys())
def test_bad_data_bugs_and_missing_objects_are_not_store_failures(exc):
    assert classify_storage_error(exc) is None
    assert named_storage_error(exc, "s3://b/t") is None


def test_other_store_errors_are_rejected_and_let_through():
    for exc in (pyarrow_error("NO_SUCH_BUCKET", "ListObjectsV2"), delta_rs_error("400 Bad Request")):
        found = classify_storage_error(exc)
        assert found is not None
        assert found.kind == "rejected"
        assert named_storage_error(exc, "s3://b/t") is None


def test_reasons_name_codes_and_statuses_never_the_exception_text():
    leaky = OSError(
        f"AWS Error ACCESS_DENIED during GetObject operation: https://b.s3.amazonaws.com/k?X-Amz-Signature={SECRET}"
    )
    named = named_storage_error(leaky, "s3://b/t", "2019-02")
    assert str(named).startswith("2019-02: access to s3://b/t was refused (GetObject: ACCESS_DENIED)")
    assert SECRET not in str(named)
    assert SECRET not in repr(named.args)
    assert classify_storage_error(s3fs_error("SlowDown", 503)).reason == "HeadObject: SlowDown (HTTP 503)"
    assert classify_storage_error(delta_rs_error("503 Service Unavailable", ", after 10 retries")).reason == (
        "OSError: HTTP 503 after 10 retries"
    )


def test_uris_lose_their_user_and_password():
    assert display_uri(f"https://user:{SECRET}@example.com/data") == "https://example.com/data"
    assert display_uri("s3://bucket/table") == "s3://bucket/table"
    assert SECRET not in str(named_storage_error(TimeoutError(), f"https://u:{SECRET}@h/t"))


def test_the_block_names_store_failures_and_passes_everything_else():
    with pytest.raises(StorageUnavailable, match="2019-02: the store of s3://b/t did not answer") as caught:
        with storage_errors_named("s3://b/t", "2019-02"):
            raise UNAVAILABLE["s3fs SlowDown"]
    assert isinstance(caught.value.__cause__, OSError)  # the client's exception stays chained
    with pytest.raises(StorageUnavailable, match=r"^the store of s3://b/t did not answer .*nothing was changed"):
        with storage_errors_named("s3://b/t"):
            raise UNAVAILABLE["botocore endpoint refused"]
    with pytest.raises(ValueError, match="boom"), storage_errors_named("s3://b/t"):
        raise ValueError("boom")
    original = CommitConflictExhausted("s3://b/t", "2019-02", 5)
    with pytest.raises(CommitConflictExhausted) as passed, storage_errors_named("s3://b/t"):
        raise original
    assert passed.value is original


@pytest.mark.parametrize(
    "error",
    [
        StorageUnavailable("s3://b/t", "", "HeadObject: SlowDown (HTTP 503)"),
        StorageAccessDenied("s3://b/t", "2019-02", "GetObject: ACCESS_DENIED"),
        StorageAccessDenied("/data/warehouse/t", "", "PermissionError"),
    ],
    ids=repr,
)
def test_named_errors_pickle_and_say_what_to_do(error):
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.args) == (type(error), str(error), error.args)
    assert any(word in str(error) for word in ("retry", "re-run"))
