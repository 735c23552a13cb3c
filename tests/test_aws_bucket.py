"""The bucket, hardened, against a local S3 (moto's server over HTTP): region enforced, a KMS
default kept, public access blocked, TLS-only policy (moto enforces it), lifecycle rules, and
the expected owner on every request that takes it."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError

from fruits_tools import s3_staging
from tests.awsmodels import assert_valid_request, takes_parameter

#: the tooling's AWS calls are decided against the operator's policy (tests/operator.py)
pytestmark = pytest.mark.usefixtures("operator_calls")

OWNER = "123456789012"  # moto's account


def test_existing_bucket_in_us_east_1_is_refused_for_paris(aws_local):
    # us-east-1 reports no LocationConstraint: it must not read as "any region"
    s3_staging.ensure_bucket("fruits-virginia", "us-east-1")
    with pytest.raises(ValueError, match="already exists in us-east-1, not in eu-west-3"):
        s3_staging.ensure_bucket("fruits-virginia", "eu-west-3")


def test_existing_kms_default_encryption_is_kept(aws_local):
    s3 = boto3.client("s3", region_name="eu-west-3")
    s3.create_bucket(
        Bucket="fruits-kms", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    key = boto3.client("kms", region_name="eu-west-3").create_key()["KeyMetadata"]["Arn"]
    kms_rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    s3.put_bucket_encryption(
        Bucket="fruits-kms",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": kms_rule}]
        },
    )
    settings = s3_staging.ensure_bucket("fruits-kms", "eu-west-3")
    rule = settings["encryption"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert rule == kms_rule  # not replaced by AES256


def test_kms_key_given_sets_sse_kms(aws_local):
    key = boto3.client("kms", region_name="eu-west-3").create_key()["KeyMetadata"]["Arn"]
    settings = s3_staging.ensure_bucket("fruits-with-key", "eu-west-3", kms_key_arn=key)
    rule = settings["encryption"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key,
    }


def test_lifecycle_rules_are_added_and_other_rules_kept(aws_local):
    s3 = boto3.client("s3", region_name="eu-west-3")
    s3.create_bucket(
        Bucket="fruits-life", CreateBucketConfiguration={"LocationConstraint": "eu-west-3"}
    )
    theirs = {"ID": "someone-else", "Status": "Enabled", "Filter": {"Prefix": "tmp/"},
              "Expiration": {"Days": 1}}  # fmt: skip
    s3.put_bucket_lifecycle_configuration(
        Bucket="fruits-life", LifecycleConfiguration={"Rules": [theirs]}
    )
    settings = s3_staging.ensure_bucket("fruits-life", "eu-west-3", staging_days=5, log_days=14)
    rules = {r["ID"]: r for r in settings["lifecycle"]}
    assert "someone-else" in rules
    assert rules["fruits-abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 3
    }
    assert rules["fruits-expire-staging"]["Filter"] == {"Prefix": "fruits/output/_staging/"}
    assert rules["fruits-expire-staging"]["Expiration"] == {"Days": 5}
    assert rules["fruits-expire-logs"]["Filter"] == {"Prefix": "fruits/logs/"}
    assert rules["fruits-expire-logs"]["Expiration"] == {"Days": 14}
    again = s3_staging.ensure_bucket("fruits-life", "eu-west-3", staging_days=5, log_days=14)
    assert len(again["lifecycle"]) == 4  # idempotent: no duplicated rule


def test_tls_only_policy_denies_plain_http_and_keeps_other_statements(aws_local):
    s3 = boto3.client("s3", region_name="eu-west-3")
    s3_staging.ensure_bucket("fruits-tls", "eu-west-3")  # plain-HTTP endpoint: no policy yet
    s3.put_object(Bucket="fruits-tls", Key="fruits/input/a.jpg", Body=b"x")
    theirs = {"Sid": "Theirs", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket",
              "Resource": "arn:aws:s3:::fruits-tls"}  # fmt: skip
    s3.put_bucket_policy(
        Bucket="fruits-tls", Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]})
    )
    settings = s3_staging.ensure_bucket("fruits-tls", "eu-west-3", tls_only=True)
    statements = {s["Sid"]: s for s in settings["policy"]["Statement"]}
    assert set(statements) == {"Theirs", s3_staging.TLS_ONLY_SID}
    deny = statements[s3_staging.TLS_ONLY_SID]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    s3_staging.ensure_bucket("fruits-tls", "eu-west-3", tls_only=True)
    again = json.loads(s3.get_bucket_policy(Bucket="fruits-tls")["Policy"])
    assert len(again["Statement"]) == 2  # idempotent
    # this server speaks plain HTTP: the policy now refuses its object requests
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="fruits-tls", Key="fruits/input/b.jpg", Body=b"x")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_every_request_that_takes_it_names_the_expected_owner(aws_local, tmp_path, operator_calls):
    """Each S3 request of ensure_bucket and of the transfers, seen on the wire."""
    operator_calls.prefixes = ("x",)  # a project whose prefix is x/
    s3 = boto3.client("s3", region_name="eu-west-3")
    sent: list[tuple[str, str | None]] = []

    def record(request, event_name, **_):
        owner = request.headers.get("x-amz-expected-bucket-owner")
        sent.append(
            (event_name.rsplit(".", 1)[1], owner.decode() if isinstance(owner, bytes) else owner)
        )

    s3.meta.events.register("before-send.s3.*", record)
    s3_staging.ensure_bucket("fruits-owner", "eu-west-3", client=s3)
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    s3_staging.upload_folder(folder, "s3://fruits-owner/x", client=s3, expected_owner=OWNER)
    s3_staging.list_prefix("s3://fruits-owner/x", s3, expected_owner=OWNER)
    s3_staging.ensure_bucket("fruits-owner", "eu-west-3", client=s3, tls_only=True)
    operations = {name for name, _ in sent}
    expected = {"HeadBucket", "PutPublicAccessBlock", "PutBucketPolicy", "PutObject",
                "PutBucketLifecycleConfiguration", "GetBucketEncryption"}  # fmt: skip
    assert expected | {"ListObjectsV2"} <= operations
    for name, owner in sent:
        takes_it = takes_parameter("s3", name, "ExpectedBucketOwner")
        assert owner == (OWNER if takes_it else None), name


def test_make_bucket_dry_run_prints_valid_requests_and_creates_nothing(aws_local, capsys):
    from fruits_tools import cli
    from tests.test_aws_iam import json_objects

    key = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert cli.main(["s3", "make-bucket", "fruits-dry", "--kms-key", key, "--dry-run"]) == 0
    printed = json_objects(capsys.readouterr().out)
    assert [p["operation"] for p in printed][0] == "CreateBucket"
    for request in printed:
        assert_valid_request("s3", request["operation"], request["params"])
    names = {b["Name"] for b in boto3.client("s3").list_buckets().get("Buckets", [])}
    assert "fruits-dry" not in names
