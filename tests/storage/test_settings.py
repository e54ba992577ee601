"""Where photos and model files go: the file system unless a bucket is configured (fitness/settings.py)."""

import subprocess
import sys

import pytest

from fitness.settings import s3_storage
from tests.support import ROOT, subprocess_env


def test_without_a_bucket_the_file_system_stays_the_default():
    assert s3_storage({}) is None
    assert s3_storage({"AWS_STORAGE_BUCKET_NAME": "", "AWS_S3_ENDPOINT_URL": "http://127.0.0.1:9000"}) is None


def test_a_bucket_and_its_endpoint_region_and_addressing_style_come_from_the_environment():
    storage = s3_storage({
        "AWS_STORAGE_BUCKET_NAME": "fitness-media", "AWS_S3_ENDPOINT_URL": "http://minio:9000",
        "AWS_S3_REGION_NAME": "ap-northeast-2", "AWS_S3_ADDRESSING_STYLE": "path",
    })
    assert storage["BACKEND"] == "storages.backends.s3.S3Storage"
    options = storage["OPTIONS"]
    assert (options["bucket_name"], options["endpoint_url"], options["region_name"], options["addressing_style"]) == (
        "fitness-media", "http://minio:9000", "ap-northeast-2", "path")
    # never overwrite a stored name, keep objects private, sign any URL; no credentials in the settings
    assert (options["file_overwrite"], options["default_acl"], options["querystring_auth"]) == (False, None, True)
    assert not {"access_key", "secret_key"} & set(options)


def test_on_aws_only_the_bucket_is_needed():
    options = s3_storage({"AWS_STORAGE_BUCKET_NAME": "fitness-media"})["OPTIONS"]
    assert (options["endpoint_url"], options["region_name"], options["addressing_style"]) == (None, None, None)


def test_an_unknown_addressing_style_is_refused_with_one_line():
    with pytest.raises(ValueError, match="AWS_S3_ADDRESSING_STYLE must be auto, path or virtual, not 'paths'"):
        s3_storage({"AWS_STORAGE_BUCKET_NAME": "fitness-media", "AWS_S3_ADDRESSING_STYLE": "paths"})


@pytest.mark.parametrize("bucket, backend", [
    (None, "FileSystemStorage"),  # what `make run` gets
    ("fitness-media", "S3Storage"),
])
def test_a_process_takes_its_default_storage_from_its_environment(bucket, backend):
    out = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.core.files.storage import "
         "default_storage as s; s._setup(); print(type(s._wrapped).__name__)"],
        cwd=ROOT, env=subprocess_env(AWS_STORAGE_BUCKET_NAME=bucket, DJANGO_SETTINGS_MODULE="fitness.settings"),
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == backend
