"""Test servers shared by fixtures and tests (a module, not conftest: `conftest` names clash across folders)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from taxi_assets.cli.local_s3 import free_port, wait_until_listening

__all__ = ["S3Server", "free_port", "wait_until_listening"]

TEST_KEY_ID = "testing-key-id"
TEST_SECRET = "testing-secret-Zq8vN3"  # scanned for by the secret-leak tests


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    key_id: str = TEST_KEY_ID
    secret: str = TEST_SECRET
    region: str = "us-east-1"

    def env(self) -> dict[str, str]:
        """The standard AWS variables a user would export; enough for every part of the pipeline."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": self.region,
        }

    def storage_options(self) -> dict[str, str]:
        """delta-rs options for this server (http endpoint needs AWS_ALLOW_HTTP)."""
        return {**self.env(), "AWS_ALLOW_HTTP": "true"}

    def boto3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.key_id,
            aws_secret_access_key=self.secret,
            region_name=self.region,
        )

    def make_bucket(self, prefix: str = "test") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.boto3_client().create_bucket(Bucket=name)
        return name
