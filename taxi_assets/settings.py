"""One settings object for every entry point, with a documented precedence.

Precedence, highest first, field by field:

1. an explicit argument (a CLI flag or a flow parameter);
2. an environment variable (``TAXI_ASSETS_*``, and the standard ``AWS_*`` for S3);
3. a Prefect block: the ``prefect_aws.AwsCredentials`` block named by the ``aws_block`` argument or
   ``TAXI_ASSETS_AWS_BLOCK``, loaded by the flow body through ``block_loader`` (never at import);
4. the default: ``./data/source``, ``./data/warehouse``, a local cluster, and for S3 the default AWS chain
   (instance profile, ``~/.aws``) because no key is handed to the readers.

Nothing here runs at import and nothing imports Prefect: entry points call :meth:`Settings.resolve`, so the
CLI's fast commands stay fast and this module is tested without an API.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from partitions import NETWORK_TIMEOUT_ENV
from taxi_assets.errors import ConfigurationError

DEFAULT_SOURCE: Final = "./data/source"
DEFAULT_SINK: Final = "./data/warehouse"
ENV_SOURCE: Final = "TAXI_ASSETS_SOURCE"
ENV_SINK: Final = "TAXI_ASSETS_SINK"
ENV_CLUSTER: Final = "TAXI_ASSETS_CLUSTER"
SOURCE_SCHEMES: Final = ("s3://", "http://", "https://", "file://")  # and local paths
SINK_SCHEMES: Final = ("s3://", "file://")  # and local paths
CLUSTER_KINDS: Final = ("local", "coiled")
CLUSTER_ADDRESS_SCHEMES: Final = ("tcp://", "tls://", "ws://", "wss://", "inproc://")  # an existing scheduler
ENV_AWS_BLOCK: Final = "TAXI_ASSETS_AWS_BLOCK"
ENV_SOURCE_ANONYMOUS: Final = "TAXI_ASSETS_SOURCE_ANONYMOUS"
ENV_LOCK_TIMEOUT: Final = "TAXI_ASSETS_LOCK_TIMEOUT"
ENV_COILED_PREFIX: Final = "TAXI_ASSETS_COILED_"
ENV_NETWORK_TIMEOUT: Final = "TAXI_ASSETS_NETWORK_TIMEOUT"
# How long a run waits for another run that is materializing the same month (seconds); then that month fails.
DEFAULT_LOCK_TIMEOUT: Final = 3600.0

SpotPolicy = Literal["on-demand", "spot", "spot_with_fallback"]
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


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

    @classmethod
    def from_aws_block(cls, block: Any) -> S3Credentials:
        """The fields of a ``prefect_aws.AwsCredentials`` block (duck-typed: this module never imports Prefect).

        A block that names only a ``profile_name`` or a role gives no key here; readers then use the default
        AWS chain, which honours ``AWS_PROFILE``.
        """
        secret: Any = getattr(block, "aws_secret_access_key", None)
        if secret is not None and hasattr(secret, "get_secret_value"):
            secret = secret.get_secret_value()  # a pydantic SecretStr
        params = getattr(block, "aws_client_parameters", None)
        return cls(
            key_id=getattr(block, "aws_access_key_id", None) or None,
            secret=secret or None,
            session_token=getattr(block, "aws_session_token", None) or None,
            endpoint_url=getattr(params, "endpoint_url", None) or None,
            region=getattr(block, "region_name", None) or None,
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
class CoiledOptions:
    """How a Coiled cluster is shaped when ``cluster="coiled"``; every field has a ``TAXI_ASSETS_COILED_*`` variable.

    ``software`` names a Coiled software environment; left empty, Coiled's package sync mirrors this
    environment (including the editable ``taxi_assets`` checkout). ``worker_memory`` empty means "sized from
    the largest stale month"; ``vm_types`` pins instance types instead (Coiled refuses both at once).
    ``token_block`` names a Prefect ``Secret`` block with the Coiled API token; without it Coiled reads
    ``DASK_COILED__TOKEN`` or the token saved by ``coiled login``.
    """

    software: str | None = None
    region: str = "us-east-1"
    worker_memory: str | None = None
    vm_types: tuple[str, ...] = ()
    spot_policy: SpotPolicy = "spot_with_fallback"
    idle_timeout: str = "20 minutes"
    max_workers: int = 20
    workspace: str | None = None
    token_block: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CoiledOptions:
        """Read ``TAXI_ASSETS_COILED_SOFTWARE``, ``..._REGION``, ``..._VM_TYPES`` (comma-separated) and so on."""

        def get(name: str) -> str | None:
            return env.get(ENV_COILED_PREFIX + name) or None

        base = cls()
        spot = get("SPOT_POLICY") or base.spot_policy
        if spot not in ("on-demand", "spot", "spot_with_fallback"):
            raise ConfigurationError(
                f"{ENV_COILED_PREFIX}SPOT_POLICY",
                f"{spot!r} is not a spot policy; use on-demand, spot or spot_with_fallback",
            )
        max_workers = get("MAX_WORKERS")
        if max_workers is not None and not (max_workers.isdigit() and int(max_workers) > 0):
            raise ConfigurationError(f"{ENV_COILED_PREFIX}MAX_WORKERS", f"{max_workers!r} is not a positive integer")
        return cls(
            software=get("SOFTWARE"),
            region=get("REGION") or base.region,
            worker_memory=get("WORKER_MEMORY"),
            vm_types=tuple(v.strip() for v in (get("VM_TYPES") or "").split(",") if v.strip()),
            spot_policy=spot,  # type: ignore[arg-type]
            idle_timeout=get("IDLE_TIMEOUT") or base.idle_timeout,
            max_workers=int(max_workers) if max_workers else base.max_workers,
            workspace=get("WORKSPACE"),
            token_block=get("TOKEN_BLOCK"),
        )


@dataclass(frozen=True)
class Settings:
    """Where the data comes from and goes to, how to compute, and with which credentials.

    Instances travel to Dask workers as task arguments (pickled), never as flow parameters: flow parameters
    are stored by the Prefect API, and these hold secrets.
    """

    source: str = DEFAULT_SOURCE
    sink: str = DEFAULT_SINK
    cluster: str = "local"
    s3: S3Credentials = field(default_factory=S3Credentials)
    source_anonymous: bool = False
    aws_block: str | None = None
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT
    coiled: CoiledOptions = field(default_factory=CoiledOptions)
    network_timeout_seconds: float | None = None  # None: the engine's own default (PARTITIONS_NETWORK_TIMEOUT, 10 s)

    @classmethod
    def resolve(
        cls,
        *,
        source: str | None = None,
        sink: str | None = None,
        cluster: str | None = None,
        aws_block: str | None = None,
        source_anonymous: bool | None = None,
        env: Mapping[str, str] | None = None,
        s3: S3Credentials | None = None,
        block_loader: Callable[[str], S3Credentials] | None = None,
    ) -> Settings:
        """Arguments win over the environment, which wins over a block, then defaults.

        Args:
            source: Source directory or URI; else ``TAXI_ASSETS_SOURCE``; else ``./data/source``.
            sink: Warehouse directory or URI; else ``TAXI_ASSETS_SINK``; else ``./data/warehouse``.
            cluster: ``local``, ``coiled`` or a scheduler address; else ``TAXI_ASSETS_CLUSTER``; else local.
            aws_block: Name of a ``prefect_aws.AwsCredentials`` block; else ``TAXI_ASSETS_AWS_BLOCK``.
            source_anonymous: Read the source unsigned (a public bucket); else ``TAXI_ASSETS_SOURCE_ANONYMOUS``.
            env: The environment to read (``os.environ`` when omitted; tests pass a dict).
            s3: Credentials already loaded from a block; the ``AWS_*`` environment wins field by field.
            block_loader: Turns a block name into credentials; the flow passes one that loads the Prefect
                block. Called only when a block name is set and ``s3`` is not given.
        """
        env = os.environ if env is None else env
        block_name = aws_block or env.get(ENV_AWS_BLOCK) or None
        if s3 is None and block_name and block_loader is not None:
            s3 = block_loader(block_name)
        from_env = S3Credentials.from_env(env)
        creds = _merge(from_env, s3) if s3 is not None else from_env
        anonymous = source_anonymous
        if anonymous is None:
            anonymous = env.get(ENV_SOURCE_ANONYMOUS, "").strip().lower() in _TRUE
        lock_timeout = _seconds(env.get(ENV_LOCK_TIMEOUT), ENV_LOCK_TIMEOUT)
        network_timeout = _seconds(env.get(ENV_NETWORK_TIMEOUT), ENV_NETWORK_TIMEOUT, positive=True)
        return cls(
            source=_source(source or env.get(ENV_SOURCE) or DEFAULT_SOURCE),
            sink=_sink(sink or env.get(ENV_SINK) or DEFAULT_SINK),
            cluster=checked_cluster(cluster or env.get(ENV_CLUSTER) or "local"),
            s3=creds,
            source_anonymous=anonymous,
            aws_block=block_name,
            lock_timeout_seconds=DEFAULT_LOCK_TIMEOUT if lock_timeout is None else lock_timeout,
            coiled=CoiledOptions.from_env(env),
            network_timeout_seconds=network_timeout,
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
                **{k: v for k, v in opts.items() if k in ("AWS_REGION", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP")},
            }
        return opts

    def secret_values(self) -> tuple[str, ...]:
        return self.s3.secret_values()

    def engine_env(self) -> dict[str, str]:
        """Variables the ``partitions`` engine reads at each call, for this process and the workers it starts.

        ``TAXI_ASSETS_NETWORK_TIMEOUT`` becomes ``PARTITIONS_NETWORK_TIMEOUT`` (each network attempt's connect
        and read wait); unset, the engine keeps its own (``PARTITIONS_NETWORK_TIMEOUT`` if set, else 10 s).
        No secret: safe to hand to any worker.
        """
        if self.network_timeout_seconds is None:
            return {}
        return {NETWORK_TIMEOUT_ENV: f"{self.network_timeout_seconds:g}"}

    def apply_engine_env(self) -> None:
        """Put :meth:`engine_env` into this process's environment (entry points and month tasks call it)."""
        os.environ.update(self.engine_env())


def _norm(uri: str) -> str:
    """Local paths become absolute (Dask workers may run elsewhere in the tree); URIs lose a trailing slash."""
    if "://" in uri:
        return uri.rstrip("/")
    return os.path.abspath(os.path.expanduser(uri))


def _source(uri: str) -> str:
    """The source, normalised; a location no reader here can list is refused before anything runs."""
    setting = f"--source / {ENV_SOURCE}"
    if "://" in uri and not uri.startswith(SOURCE_SCHEMES):
        raise ConfigurationError(
            setting,
            f"{uri}: no reader for {uri.split('://', 1)[0]}:// sources; use a local directory, s3://bucket/prefix "
            "or an http(s)://.../fhvhv_tripdata_{key}.parquet template",
        )
    if "{key}" in uri and not uri.startswith(("http://", "https://")):
        folder = uri.split("{key}", 1)[0].rsplit("/", 1)[0] or "."
        raise ConfigurationError(
            setting,
            f"{uri}: a {{key}} template is for http(s) sources; a local or s3:// source is the directory holding "
            f"the fhvhv_tripdata_YYYY-MM.parquet files (here, probably {folder})",
        )
    return _norm(uri)


def _sink(uri: str) -> str:
    """The sink, normalised; a location the Delta writer and DuckDB here cannot both use is refused."""
    if "://" in uri and not uri.startswith(SINK_SCHEMES):
        raise ConfigurationError(
            f"--sink / {ENV_SINK}",
            f"{uri}: no writer for {uri.split('://', 1)[0]}:// sinks; use a local directory or s3://bucket/prefix",
        )
    return _norm(uri)


def checked_cluster(value: str) -> str:
    """``value`` when it is a cluster setting ``choose_cluster`` knows; refused when the settings are resolved, so a
    typo is found before Prefect and an API server start."""
    if value in CLUSTER_KINDS or value.startswith(CLUSTER_ADDRESS_SCHEMES):
        return value
    raise ConfigurationError(
        f"cluster (--cluster / {ENV_CLUSTER})",
        f"unknown cluster {value!r}; use 'local', 'coiled' or a scheduler address like tcp://host:8786",
    )


def _seconds(text: str | None, name: str, *, positive: bool = False) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < 0 or (positive and not 0 < value < float("inf")):
        raise ConfigurationError(name, f"{text!r} is not a number of seconds {'> 0' if positive else '>= 0'}")
    return value


def _merge(env: S3Credentials, block: S3Credentials) -> S3Credentials:
    """Environment values win field by field; the block fills the gaps.

    A key pair is never mixed: when the environment has a key id, its secret and session token go with it.
    """
    return S3Credentials(
        key_id=env.key_id or block.key_id,
        secret=env.secret if env.key_id else block.secret,
        session_token=env.session_token if env.key_id else block.session_token,
        endpoint_url=env.endpoint_url or block.endpoint_url,
        region=env.region or block.region,
        anonymous=env.anonymous or block.anonymous,
    )
