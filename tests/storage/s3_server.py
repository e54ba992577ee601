"""A local S3: moto's server mode (`python -m moto.server`) as a subprocess on 127.0.0.1.

The real boto3 (through django-storages, in this process and in the child processes the
tests start) talks to it over HTTP like to any S3-compatible endpoint. `env` holds the
variables that put a process's default storage on its bucket (fitness/settings.py);
`keys()` and `get()` look into the bucket with a client of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
from botocore.config import Config

from tests.rabbitmq_node import free_port

REGION = "ap-northeast-2"  # not us-east-1: the region has to reach the client and the bucket
ACCESS_KEY_ID = "fitness-test-key"
SECRET_ACCESS_KEY = "fitness-test-secret"


class S3Server:
    def __init__(self, log_dir: Path, *, bucket: str | None = None):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.bucket = bucket or f"fitness-test-{uuid.uuid4().hex[:10]}"
        self.log_path = log_dir / f"moto-s3-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.client = boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY, config=Config(retries={"max_attempts": 2}),
        )

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to keep its photos and model files in this bucket."""
        return {
            "AWS_STORAGE_BUCKET_NAME": self.bucket,
            "AWS_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }

    def start(self, timeout: float = 60.0) -> S3Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"moto's S3 server exited with {self.process.returncode}: {self.log()}")
            try:
                self.client.list_buckets()
                break
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"moto's S3 server did not answer within {timeout} s: {self.log()}") from None
                time.sleep(0.2)
        self.client.create_bucket(Bucket=self.bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- looking into the bucket ------------------------------------------------------------

    def keys(self, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            found.update(item["Key"] for item in page.get("Contents", ()))
        return found

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def head(self, key: str) -> dict:
        return self.client.head_object(Bucket=self.bucket, Key=key)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def empty(self, prefix: str = "") -> None:
        for key in self.keys(prefix):
            self.delete(key)
