"""Settings precedence (argument > environment > block > default), credentials rendering and secrecy.

Pure: environments are dicts, the block loader is a function; the one Prefect object used is a real
``prefect_aws.AwsCredentials`` built in memory (no API)."""

from __future__ import annotations

import os

import pytest
from prefect_aws import AwsCredentials
from prefect_aws.client_parameters import AwsClientParameters

from taxi_assets.errors import ConfigurationError
from taxi_assets.settings import DEFAULT_LOCK_TIMEOUT, CoiledOptions, S3Credentials, Settings

SECRET = "block-secret-7Yq"
BLOCK = S3Credentials(
    key_id="BLOCKKEY", secret=SECRET, endpoint_url="http://block:9000", region="eu-west-1", session_token="tok"
)


def loader(calls: list[str]):
    def load(name: str) -> S3Credentials:
        calls.append(name)
        return BLOCK

    return load


def test_defaults_without_arguments_environment_or_block() -> None:
    cfg = Settings.resolve(env={})
    assert cfg.source == os.path.abspath("data/source")
    assert cfg.sink == os.path.abspath("data/warehouse")
    assert cfg.cluster == "local"
    assert cfg.s3 == S3Credentials()  # nothing handed over: readers use the default AWS chain
    assert (cfg.aws_block, cfg.source_anonymous, cfg.lock_timeout_seconds) == (None, False, DEFAULT_LOCK_TIMEOUT)
    assert cfg.coiled == CoiledOptions()


def test_an_argument_wins_over_the_environment() -> None:
    env = {"TAXI_ASSETS_SOURCE": "s3://env/src/", "TAXI_ASSETS_SINK": "s3://env/sink", "TAXI_ASSETS_CLUSTER": "coiled"}
    assert Settings.resolve(env=env).source == "s3://env/src"  # trailing slash dropped
    cfg = Settings.resolve(source="s3://arg/src", sink="/tmp/../tmp/wh", cluster="tcp://h:8786", env=env)
    assert (cfg.source, cfg.sink, cfg.cluster) == ("s3://arg/src", "/tmp/wh", "tcp://h:8786")


def test_the_block_is_loaded_only_when_named_by_argument_or_environment() -> None:
    calls: list[str] = []
    assert Settings.resolve(env={}, block_loader=loader(calls)).s3 == S3Credentials()
    assert calls == []
    assert Settings.resolve(env={"TAXI_ASSETS_AWS_BLOCK": "from-env"}, block_loader=loader(calls)).s3 == BLOCK
    cfg = Settings.resolve(aws_block="from-arg", env={"TAXI_ASSETS_AWS_BLOCK": "from-env"}, block_loader=loader(calls))
    assert calls == ["from-env", "from-arg"]
    assert cfg.aws_block == "from-arg"  # kept, so the materialization flow loads the same block


def test_the_environment_wins_over_the_block_field_by_field_without_mixing_key_pairs() -> None:
    calls: list[str] = []
    env = {"AWS_REGION": "us-west-2"}
    cfg = Settings.resolve(aws_block="b", env=env, block_loader=loader(calls))
    assert cfg.s3 == S3Credentials(
        key_id="BLOCKKEY", secret=SECRET, session_token="tok", endpoint_url="http://block:9000", region="us-west-2"
    )
    env = {"AWS_ACCESS_KEY_ID": "ENVKEY", "AWS_SECRET_ACCESS_KEY": "env-secret", "AWS_ENDPOINT_URL": "http://env:1"}
    cfg = Settings.resolve(aws_block="b", env=env, block_loader=loader(calls))
    assert (cfg.s3.key_id, cfg.s3.secret, cfg.s3.session_token) == ("ENVKEY", "env-secret", None)
    assert (cfg.s3.endpoint_url, cfg.s3.region) == ("http://env:1", "eu-west-1")


def test_credentials_from_a_real_aws_credentials_block() -> None:
    block = AwsCredentials(
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key=SECRET,
        region_name="us-east-2",
        aws_client_parameters=AwsClientParameters(endpoint_url="http://127.0.0.1:9000"),
    )
    creds = S3Credentials.from_aws_block(block)
    assert creds == S3Credentials(
        key_id="AKIAEXAMPLE", secret=SECRET, endpoint_url="http://127.0.0.1:9000", region="us-east-2"
    )
    # A profile-only block hands over no key: the default AWS chain (AWS_PROFILE) decides.
    assert S3Credentials.from_aws_block(AwsCredentials(profile_name="tlc")) == S3Credentials()


def test_storage_options_for_s3_local_paths_and_an_anonymous_public_source() -> None:
    creds = S3Credentials(key_id="K", secret=SECRET, endpoint_url="http://127.0.0.1:9000", region="us-east-1")
    cfg = Settings.resolve(source="s3://nyc-tlc/trip data", sink="s3://mine/fhvhv", env={}, s3=creds)
    assert cfg.storage_options(cfg.trips_uri) == {
        "AWS_ACCESS_KEY_ID": "K",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
    }
    assert Settings.resolve(env={}).storage_options("/tmp/x") is None
    public = Settings.resolve(
        source="s3://nyc-tlc/trip data", sink="s3://mine/fhvhv", env={"TAXI_ASSETS_SOURCE_ANONYMOUS": "true"}, s3=creds
    )
    assert public.source_anonymous
    source_opts = public.storage_options(public.source + "/fhvhv_tripdata_2019-02.parquet")
    assert source_opts is not None
    assert source_opts["anon"] == "true"
    assert "AWS_SECRET_ACCESS_KEY" not in source_opts  # unsigned: the key never goes to the public bucket
    assert public.storage_options(public.trips_uri)["AWS_SECRET_ACCESS_KEY"] == SECRET  # the sink stays signed
    assert not Settings.resolve(source_anonymous=False, env={"TAXI_ASSETS_SOURCE_ANONYMOUS": "1"}).source_anonymous


def test_secrets_never_show_in_a_repr() -> None:
    cfg = Settings.resolve(env={}, s3=BLOCK)
    assert SECRET not in repr(cfg)
    assert "tok" not in repr(cfg.s3)
    assert cfg.secret_values() == (SECRET, "tok")


def test_coiled_options_and_lock_timeout_from_the_environment() -> None:
    env = {
        "TAXI_ASSETS_COILED_SOFTWARE": "taxi-env",
        "TAXI_ASSETS_COILED_REGION": "eu-central-1",
        "TAXI_ASSETS_COILED_VM_TYPES": "m6i.xlarge, m6i.2xlarge",
        "TAXI_ASSETS_COILED_SPOT_POLICY": "on-demand",
        "TAXI_ASSETS_COILED_IDLE_TIMEOUT": "5 minutes",
        "TAXI_ASSETS_COILED_MAX_WORKERS": "4",
        "TAXI_ASSETS_COILED_WORKSPACE": "tlc",
        "TAXI_ASSETS_COILED_TOKEN_BLOCK": "coiled-token",
        "TAXI_ASSETS_LOCK_TIMEOUT": "90",
    }
    cfg = Settings.resolve(env=env)
    assert cfg.coiled == CoiledOptions(
        software="taxi-env",
        region="eu-central-1",
        vm_types=("m6i.xlarge", "m6i.2xlarge"),
        spot_policy="on-demand",
        idle_timeout="5 minutes",
        max_workers=4,
        workspace="tlc",
        token_block="coiled-token",
    )
    assert cfg.lock_timeout_seconds == 90.0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TAXI_ASSETS_COILED_SPOT_POLICY", "cheap", "not a spot policy"),
        ("TAXI_ASSETS_COILED_MAX_WORKERS", "0", "not a positive integer"),
        ("TAXI_ASSETS_LOCK_TIMEOUT", "soon", "not a number of seconds"),
    ],
)
def test_bad_environment_values_are_configuration_errors(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        Settings.resolve(env={name: value})
    assert info.value.setting == name


@pytest.mark.parametrize("origin", ["argument", "environment"])
def test_an_unknown_cluster_is_refused_when_the_settings_are_resolved(origin: str) -> None:
    given = {"cluster": "lcoal"} if origin == "argument" else {"env": {"TAXI_ASSETS_CLUSTER": "lcoal"}}
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(**given)  # type: ignore[arg-type]
    assert str(info.value) == (
        "cluster (--cluster / TAXI_ASSETS_CLUSTER): unknown cluster 'lcoal'; use 'local', 'coiled' or a scheduler "
        "address like tcp://host:8786"
    )


@pytest.mark.parametrize("cluster", ["local", "coiled", "tcp://h:8786", "tls://h:8786", "inproc://x/1/2"])
def test_every_cluster_choose_cluster_knows_is_accepted(cluster: str) -> None:
    assert Settings.resolve(cluster=cluster, env={}).cluster == cluster


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            {"source": "ftp://host/tlc"},
            "--source / TAXI_ASSETS_SOURCE: ftp://host/tlc: no reader for ftp:// sources; use a local directory, "
            "s3://bucket/prefix or an http(s)://.../fhvhv_tripdata_{key}.parquet template",
        ),
        (
            {"source": "/data/tlc/fhvhv_tripdata_{key}.parquet"},
            "--source / TAXI_ASSETS_SOURCE: /data/tlc/fhvhv_tripdata_{key}.parquet: a {key} template is for http(s) "
            "sources; a local or s3:// source is the directory holding the fhvhv_tripdata_YYYY-MM.parquet files "
            "(here, probably /data/tlc)",
        ),
        (
            {"sink": "gs://bucket/wh"},
            "--sink / TAXI_ASSETS_SINK: gs://bucket/wh: no writer for gs:// sinks; use a local directory or "
            "s3://bucket/prefix",
        ),
    ],
    ids=["unknown-source-scheme", "local-key-template", "unknown-sink-scheme"],
)
def test_a_location_nothing_here_can_read_or_write_is_refused_with_what_works(given, expected) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.resolve(**given, env={})
    assert str(info.value) == expected


@pytest.mark.parametrize(
    ("source", "sink"),
    [
        ("s3://tlc/fhvhv", "s3://wh/fhvhv"),
        ("https://d37ci6vzurychx.cloudfront.net/trip-data/fhvhv_tripdata_{key}.parquet", "file:///data/wh"),
        ("file:///data/tlc", "/data/wh"),
    ],
)
def test_every_location_the_readers_and_writers_know_is_accepted(source: str, sink: str) -> None:
    cfg = Settings.resolve(source=source, sink=sink, env={})
    assert (cfg.source, cfg.sink) == (source, sink)
