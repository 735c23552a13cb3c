"""The gate that makes the local S3 server answer as AWS would for a principal
(tests/s3gate.py): its mapping of requests to IAM actions, and live requests through boto3."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from fruits_tools import iam
from tests.iamsim import Principal
from tests.s3gate import Authorization, S3Gate, authorizations

BUCKET = "gate-check"
REGION = "eu-west-3"


def test_requests_map_to_the_actions_s3_authorizes_them_with():
    def one(method, path, query=None, headers=None, body=b""):
        return authorizations(method, path, query or {}, headers or {}, body)

    bucket, obj = "arn:aws:s3:::b", "arn:aws:s3:::b/fruits/input/a.jpg"
    assert one("GET", "/b", {"list-type": ["2"], "prefix": ["fruits/input/"],
                             "delimiter": ["/"]}) == [
        Authorization("s3:ListBucket", bucket,
                      (("s3:delimiter", "/"), ("s3:prefix", "fruits/input/")))
    ]  # fmt: skip
    # no prefix: the request context holds an empty one (listing the whole bucket)
    assert one("GET", "/b", {"list-type": ["2"]})[0].context == (("s3:prefix", ""),)
    assert one("HEAD", "/b") == [Authorization("s3:ListBucket", bucket)]  # no s3:prefix at all
    assert one("GET", "/b", {"location": [""]})[0].action == "s3:GetBucketLocation"
    assert one("HEAD", "/b/fruits/input/a.jpg") == [Authorization("s3:GetObject", obj)]
    assert one("PUT", "/b/fruits/input/a.jpg") == [Authorization("s3:PutObject", obj)]
    copy = one("PUT", "/b/x/new", headers={"x-amz-copy-source": "/b/x/old%20one"})
    assert copy == [Authorization("s3:GetObject", "arn:aws:s3:::b/x/old one"),
                    Authorization("s3:PutObject", "arn:aws:s3:::b/x/new")]  # fmt: skip
    assert one("POST", "/b/k", {"uploads": [""]})[0].action == "s3:PutObject"
    assert one("PUT", "/b/k", {"partNumber": ["1"], "uploadId": ["u"]})[0].action == (
        "s3:PutObject"
    )
    assert one("DELETE", "/b/k", {"uploadId": ["u"]})[0].action == "s3:AbortMultipartUpload"
    assert one("GET", "/b/k", {"uploadId": ["u"]})[0].action == "s3:ListMultipartUploadParts"
    body = b"<Delete><Object><Key>x/1</Key></Object><Object><Key>x/2</Key></Object></Delete>"
    assert one("POST", "/b", {"delete": [""]}, body=body) == [
        Authorization("s3:DeleteObject", "arn:aws:s3:::b/x/1"),
        Authorization("s3:DeleteObject", "arn:aws:s3:::b/x/2"),
    ]


@pytest.fixture(scope="module")
def gate(s3_gate):
    return s3_gate


def _client(gate: S3Gate, key: str, principal: Principal):
    gate.admit(key, principal)
    return gate.client(key, REGION)


@pytest.fixture(scope="module")
def nodes(gate):
    """A client of the bucket's owner (everything allowed) and one of the nodes' role."""
    admin = _client(gate, "ADMINKEY", Principal.role("admin", all={
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))  # fmt: skip
    admin.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    admin.put_object(Bucket=BUCKET, Key="fruits/input/Apple/a.jpg", Body=b"jpeg")
    role = Principal.role(iam.INSTANCE_ROLE, nodes=iam.instance_policy(BUCKET, "fruits"))
    return {"admin": admin, "node": _client(gate, "NODEKEY", role), "role": role}


def test_the_nodes_read_input_and_list_their_prefixes(nodes):
    node = nodes["node"]
    assert node.get_object(Bucket=BUCKET, Key="fruits/input/Apple/a.jpg")["Body"].read() == b"jpeg"
    listed = node.list_objects_v2(Bucket=BUCKET, Prefix="fruits/input/")
    assert [o["Key"] for o in listed["Contents"]] == ["fruits/input/Apple/a.jpg"]


def test_a_request_outside_the_policy_is_refused_naming_the_action_and_the_key(nodes, gate):
    with pytest.raises(ClientError) as caught:
        nodes["node"].put_object(Bucket=BUCKET, Key="fruits/input/Apple/b.jpg", Body=b"x")
    error = caught.value.response["Error"]
    assert error["Code"] == "AccessDenied"
    assert (
        's3:PutObject on resource: "arn:aws:s3:::gate-check/fruits/input/Apple/b.jpg"'
        in (error["Message"])
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        nodes["node"].list_objects_v2(Bucket=BUCKET)  # the whole bucket: no prefix granted
    assert gate.denied(iam.INSTANCE_ROLE)[-1].action == "s3:ListBucket"


def test_a_missing_key_is_404_only_with_list_bucket_and_no_prefix_context(nodes, gate):
    """AWS's rule (tests/s3gate.py): Hadoop's and Spark's existence checks HEAD missing keys
    (an output folder before an overwrite, _SUCCESS, a staging path) and need 404, not 403."""
    for key in ("fruits/output/_SUCCESS", "fruits/output/features"):
        with pytest.raises(ClientError) as caught:
            nodes["node"].head_object(Bucket=BUCKET, Key=key)
        assert caught.value.response["Error"]["Code"] == "404", key
    # a principal allowed ListBucket only under an s3:prefix condition gets 403 instead
    strict = nodes["role"].without("nodes", "ListOnlyTheProjectPrefixes")
    prefixed = {"Version": "2012-10-17", "Statement": [{
        "Sid": "Prefixed", "Effect": "Allow", "Action": "s3:ListBucket",
        "Resource": f"arn:aws:s3:::{BUCKET}",
        "Condition": {"StringLike": {"s3:prefix": ["fruits/*"]}}}]}  # fmt: skip
    strict = Principal(strict.name + "-strict", strict.arn,
                       (*strict.policies, ("prefixed", _dumps(prefixed))))  # fmt: skip
    with pytest.raises(ClientError) as caught:
        _client(gate, "STRICTKEY", strict).head_object(Bucket=BUCKET, Key="fruits/output/x")
    assert caught.value.response["Error"]["Code"] == "403"
    assert gate.denied(strict.name)[-1].note == "404 without ListBucket"


def _dumps(document: dict) -> str:
    import json

    return json.dumps(document, sort_keys=True)
