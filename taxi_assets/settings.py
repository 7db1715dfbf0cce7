"""One settings object for every entry point, with a documented precedence.

Precedence, highest first: explicit argument (CLI flag or flow parameter) > environment variable >
Prefect block (``prefect_aws.AwsCredentials``, loaded by the flow when a block name is given) > default.
Nothing here runs at import: entry points call :meth:`Settings.resolve`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Final

DEFAULT_SOURCE: Final = "./data/source"
DEFAULT_SINK: Final = "./data/warehouse"
ENV_SOURCE: Final = "TAXI_ASSETS_SOURCE"
ENV_SINK: Final = "TAXI_ASSETS_SINK"
ENV_CLUSTER: Final = "TAXI_ASSETS_CLUSTER"
TLC_CLOUDFRONT: Final = "https://d37ci6vzurychx.cloudfront.net/trip-data/fhvhv_tripdata_{key}.parquet"


@dataclass(frozen=True)
class S3Credentials:
    """Credentials and endpoint for S3 or an S3-compatible store; the secret never shows in a repr."""

    key_id: str | None = None
    secret: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    region: str | None = None
    anonymous: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> S3Credentials:
        """The standard AWS variables; with none set, readers fall back to the default AWS chain."""
        return cls(
            key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            secret=env.get("AWS_SECRET_ACCESS_KEY") or None,
            session_token=env.get("AWS_SESSION_TOKEN") or None,
            endpoint_url=env.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL_S3") or None,
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )

    def to_storage_options(self) -> dict[str, str]:
        """Options in the AWS_* spelling understood by delta-rs and by ``partitions.listing``."""
        out: dict[str, str] = {}
        if self.key_id:
            out["AWS_ACCESS_KEY_ID"] = self.key_id
        if self.secret:
            out["AWS_SECRET_ACCESS_KEY"] = self.secret
        if self.session_token:
            out["AWS_SESSION_TOKEN"] = self.session_token
        if self.endpoint_url:
            out["AWS_ENDPOINT_URL"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                out["AWS_ALLOW_HTTP"] = "true"  # delta-rs refuses plain http endpoints otherwise
        if self.region:
            out["AWS_REGION"] = self.region
        if self.anonymous:
            out["anon"] = "true"
        return out

    def secret_values(self) -> tuple[str, ...]:
        """What must never appear in logs, artifacts or metadata (used by redaction and by tests)."""
        return tuple(v for v in (self.secret, self.session_token) if v)


@dataclass(frozen=True)
class Settings:
    """Where the data comes from and goes to, how to compute, and with which credentials."""

    source: str = DEFAULT_SOURCE
    sink: str = DEFAULT_SINK
    cluster: str = "local"
    s3: S3Credentials = field(default_factory=S3Credentials)
    source_anonymous: bool = False

    @classmethod
    def resolve(
        cls,
        *,
        source: str | None = None,
        sink: str | None = None,
        cluster: str | None = None,
        env: Mapping[str, str] | None = None,
        s3: S3Credentials | None = None,
    ) -> Settings:
        """Arguments win over the environment, which wins over ``s3`` (e.g. from a block), then defaults."""
        env = os.environ if env is None else env
        from_env = S3Credentials.from_env(env)
        creds = _merge(from_env, s3) if s3 is not None else from_env
        return cls(
            source=_norm(source or env.get(ENV_SOURCE) or DEFAULT_SOURCE),
            sink=_norm(sink or env.get(ENV_SINK) or DEFAULT_SINK),
            cluster=cluster or env.get(ENV_CLUSTER) or "local",
            s3=creds,
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def trips_uri(self) -> str:
        return f"{self.sink}/trips"

    @property
    def quarantine_uri(self) -> str:
        return f"{self.sink}/quarantine"

    @property
    def checks_uri(self) -> str:
        return f"{self.sink}/checks"

    def storage_options(self, uri: str) -> dict[str, str] | None:
        """Options for an adapter touching ``uri``; ``None`` for local paths."""
        if not uri.startswith("s3://"):
            return None
        opts = self.s3.to_storage_options()
        if uri.startswith(self.source) and self.source_anonymous:
            opts = {
                "anon": "true",
                **{k: v for k, v in opts.items() if k in ("AWS_REGION", "AWS_ENDPOINT_URL")},
            }
        return opts

    def secret_values(self) -> tuple[str, ...]:
        return self.s3.secret_values()


def _norm(uri: str) -> str:
    """Local paths become absolute (Dask workers may run elsewhere in the tree); URIs lose a trailing slash."""
    if "://" in uri:
        return uri.rstrip("/")
    return os.path.abspath(os.path.expanduser(uri))


def _merge(env: S3Credentials, block: S3Credentials) -> S3Credentials:
    """Environment values win field by field; the block fills the gaps."""
    return S3Credentials(
        key_id=env.key_id or block.key_id,
        secret=env.secret if env.key_id else block.secret,
        session_token=env.session_token if env.key_id else block.session_token,
        endpoint_url=env.endpoint_url or block.endpoint_url,
        region=env.region or block.region,
        anonymous=env.anonymous or block.anonymous,
    )
