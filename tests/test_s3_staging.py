"""S3 staging against a real S3 server over HTTP (moto's standalone server on loopback)."""

import json

import boto3
import pytest

from fruits_tools import s3_staging
from helpers import storage
from helpers.core import report

#: the tooling's AWS calls are decided against the operator's policy (tests/operator.py)
pytestmark = pytest.mark.usefixtures("operator_calls")

BUCKET = "fruits-test-bucket"


@pytest.fixture
def bucket(aws_local):
    s3_staging.ensure_bucket(BUCKET, "eu-west-3")
    return BUCKET


def test_bucket_is_private_and_encrypted(aws_local):
    settings = s3_staging.ensure_bucket(BUCKET, "eu-west-3")
    assert settings["public_access_block"] == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rule = settings["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule["SSEAlgorithm"] == "AES256"
    s3 = boto3.client("s3")
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == "eu-west-3"
    # idempotent: a second call keeps the bucket and its settings
    assert s3_staging.ensure_bucket(BUCKET, "eu-west-3") == settings


def test_upload_skips_what_is_already_there_and_download_round_trips(
    bucket, small_real_set, tmp_path, operator_calls
):
    operator_calls.prefixes = ("data",)  # a project whose prefix is data/
    seen = []
    first = s3_staging.upload_folder(
        small_real_set, f"s3://{bucket}/data", progress=lambda d, t: seen.append((d, t))
    )
    assert len(first.transferred) == 12 and not first.skipped
    assert seen[-1] == (12, 12)

    listing = s3_staging.list_prefix(f"s3://{bucket}/data")
    assert len(listing) == 12
    assert all(o["key"].startswith("data/Training/") for o in listing)

    changed = (
        small_real_set
        / "Training"
        / "Kiwi"
        / sorted(p.name for p in (small_real_set / "Training" / "Kiwi").iterdir())[0]
    )
    changed.write_bytes(changed.read_bytes() + b"\x00")
    second = s3_staging.upload_folder(small_real_set, f"s3://{bucket}/data")
    assert len(second.transferred) == 1 and len(second.skipped) == 11

    target = tmp_path / "back"
    down = s3_staging.download_prefix(f"s3://{bucket}/data", target)
    assert len(down.transferred) == 12
    for path in small_real_set.rglob("*.jpg"):
        assert (target / path.relative_to(small_real_set)).read_bytes() == path.read_bytes()
    again = s3_staging.download_prefix(f"s3://{bucket}/data", target)
    assert len(again.skipped) == 12 and not again.transferred


def test_run_report_written_to_s3(bucket):
    uri = f"s3://{bucket}/out/run_report.json"
    report.write_report({"images": {"total": 3}}, uri)
    assert json.loads(storage.read_bytes(uri)) == {"images": {"total": 3}}
    head = boto3.client("s3").head_object(Bucket=bucket, Key="out/run_report.json")
    assert head["ContentType"] == "application/json"
    assert json.loads(storage.read_bytes(uri)) == {"images": {"total": 3}}


def test_upload_of_a_missing_folder_is_a_clear_error(aws_local, tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        s3_staging.upload_folder(tmp_path / "nope", f"s3://{BUCKET}/x")


def test_s3_command_line(aws_local, small_real_set, tmp_path):
    from tests.clirun import run_cli

    def cli(*args):
        return run_cli("fruits_tools", "s3", *args, timeout=120)

    assert cli("make-bucket", BUCKET).returncode == 0
    up = cli("upload", str(small_real_set), f"s3://{BUCKET}/in")
    assert up.returncode == 0 and "12 transferred" in up.stdout, up.stderr
    again = cli("upload", str(small_real_set), f"s3://{BUCKET}/in")
    assert "0 transferred" in again.stdout and "12 already up to date" in again.stdout
    listing = cli("ls", f"s3://{BUCKET}/in")
    assert listing.stdout.strip().splitlines()[-1].startswith("12 objects")
    bad = cli("upload", str(tmp_path / "missing"), f"s3://{BUCKET}/in")
    assert bad.returncode == 2 and bad.stderr.startswith("error: no folder")


def test_missing_object_reads_as_file_not_found(bucket):
    with pytest.raises(FileNotFoundError, match="no such object"):
        storage.read_bytes(f"s3://{bucket}/nothing/here.json")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("s3://no-such-bucket-anywhere/x.json")
