"""EMR Studio's role for ``emr notebooks-execution`` (emr/iam/studio-policy.json): the S3 and
KMS requests of a notebook execution allowed by the IAM simulator, nothing outside the
notebooks' prefixes; ``emr studio-role create`` against a local IAM, within the operator's
policy."""

from __future__ import annotations

import boto3
import pytest

from fruits_tools import cli, emr, iam
from tests.iamsim import ACCOUNT, Principal
from tests.test_aws_iam import start_moto

BUCKET, REGION = "fruits-studio", "eu-west-3"
KEY = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TAG = "aws:ResourceTag/for-use-with-amazon-emr-managed-policies"


def _role(kms: str | None = KEY) -> Principal:
    policy = iam.studio_policy(BUCKET, "fruits", ACCOUNT, REGION, kms)
    return Principal.role(iam.STUDIO_ROLE, **{iam.STUDIO_POLICY_NAME: policy})


def test_a_notebook_execution_s_requests_are_allowed_and_nothing_else(iam_simulator):
    """The requests the execution makes with this role, from the request the launcher builds:
    read the staged copy, write the executed notebook under the output prefix, the bucket's
    encryption, the key of SSE-KMS objects."""
    spec = emr.ClusterSpec(bucket=BUCKET)
    request = emr.notebook_execution_request(spec, "j-1", "03_pca", {}, iam.STUDIO_ROLE)
    source = request["NotebookS3Location"]
    target = request["OutputNotebookS3Location"]
    role, bucket = _role(), f"arn:aws:s3:::{BUCKET}"
    allowed = [
        ("s3:GetObject", f"{bucket}/{source['Key']}", {}),
        ("s3:PutObject", f"{bucket}/{target['Key']}/03_pca.html", {}),
        ("s3:ListBucket", bucket, {"s3:prefix": target["Key"] + "/"}),
        ("s3:ListBucket", bucket, {}),  # a HEAD of a missing key: 404, not 403
        ("s3:GetEncryptionConfiguration", bucket, {}),
        ("kms:Decrypt", KEY, {}),
        ("kms:GenerateDataKey", KEY, {}),
        ("elasticmapreduce:DescribeCluster",
         f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/j-1", {}),
        ("ec2:CreateNetworkInterface",
         f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/subnet-1", {TAG: "true"}),
        ("ec2:CreateNetworkInterface", f"arn:aws:ec2:{REGION}:{ACCOUNT}:network-interface/eni-1",
         {"aws:RequestTag/for-use-with-amazon-emr-managed-policies": "true"}),
    ]  # fmt: skip
    for action, resource, context in allowed:
        assert iam_simulator.allows(role, action, resource, context), (action, resource)
    refused = [
        ("s3:GetObject", f"{bucket}/fruits/input/Training/Apple/a.jpg", {}),
        ("s3:PutObject", f"{bucket}/fruits/code/notebooks-studio/03_pca.ipynb", {}),
        ("s3:PutObject", f"{bucket}/fruits/output/features/part-0.parquet", {}),
        ("s3:ListBucket", bucket, {"s3:prefix": "fruits/input/"}),
        ("kms:Decrypt", KEY.replace("1234abcd", "9999abcd"), {}),
        ("ec2:CreateNetworkInterface", f"arn:aws:ec2:{REGION}:{ACCOUNT}:subnet/subnet-2", {}),
    ]
    for action, resource, context in refused:
        assert not iam_simulator.allows(role, action, resource, context), (action, resource)
    # without a key, no KMS at all
    assert not iam_simulator.allows(_role(None), "kms:Decrypt", KEY)


@pytest.fixture
def local_iam(monkeypatch, operator_calls):
    server = start_moto(monkeypatch, managed_policies=False)
    yield
    server.stop()


def test_studio_role_create_and_delete(local_iam, capsys):
    argv = ["emr", "studio-role", "create", "--bucket", BUCKET, "--kms-key", KEY]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert f'"studio_role": "arn:aws:iam::{ACCOUNT}:role/{iam.STUDIO_ROLE}"' in out
    client = boto3.client("iam", region_name=REGION)
    found = client.get_role_policy(RoleName=iam.STUDIO_ROLE, PolicyName=iam.STUDIO_POLICY_NAME)
    document = found["PolicyDocument"]
    assert document == iam.studio_policy(BUCKET, "fruits", ACCOUNT, REGION, KEY)
    assert cli.main(argv) == 0  # again: brought up to date, not an error
    assert cli.main(["emr", "studio-role", "delete", "--bucket", BUCKET]) == 0
    names = {r["RoleName"] for r in client.list_roles()["Roles"]}
    assert iam.STUDIO_ROLE not in names
