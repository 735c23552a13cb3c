"""The operator's policy (``emr/iam/operator-policy.json``) is what the tooling needs and no
more: the commands of docs/emr.md run against local AWS endpoints with every call decided by
the IAM simulator against it (the ``operator_calls`` fixture), and each statement is needed by
some call: without it, the same calls are refused, naming the action and the resource."""

from __future__ import annotations

import json

import boto3
import pytest

from fruits_tools import cli, iam
from tests.operator import Calls, operator
from tests.test_aws_iam import start_moto
from tests.test_aws_launcher import BUCKET, KEY, play_emr, stage_command

ARGS = ["--bucket", BUCKET, "--poll", "0.2", "--timeout", "60"]
#: Statements no command here exercises, each with the command that needs it.
NOT_EXERCISED = {
    "RunTheStagedNotebooksOnItsClusters": "emr notebooks-execution (needs EMR Studio's role)",
}


@pytest.fixture
def commands(monkeypatch, tmp_path, operator_calls):
    """docs/emr.md's commands in order, through the CLI, against moto's server."""
    server = start_moto(monkeypatch, managed_policies=True)
    ec2 = boto3.client("ec2", region_name="eu-west-3")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.8.{i}.0/24")["Subnet"]["SubnetId"]
               for i in (1, 2)]  # fmt: skip
    images = tmp_path / "images" / "Training" / "Apple"
    images.mkdir(parents=True)
    (images / "a.jpg").write_bytes(b"jpeg")
    steps = [
        ["s3", "make-bucket", BUCKET],
        ["s3", "upload", str(tmp_path / "images"), f"s3://{BUCKET}/fruits/input"],
        ["emr", "roles", "create", "--bucket", BUCKET],
        ["emr", "security-config", "create", "--bucket", BUCKET, "--kms-key", KEY],
        ["emr", "network", "prepare", "--bucket", BUCKET, "--subnet-id", subnets[0]],
        ["emr", "network", "prepare", "--bucket", BUCKET, "--subnet-id", subnets[1],
         "--create-security-groups"],
        ["emr", "network", "check", "--bucket", BUCKET],
        stage_command(tmp_path),
        ["emr", "run", *ARGS, "--subnet-id", subnets[0]],
        ["s3", "download", f"s3://{BUCKET}/fruits/output", str(tmp_path / "output")],
        ["emr", "teardown", "--bucket", BUCKET, "--yes"],
    ]  # fmt: skip
    for argv in steps:
        if argv[:2] == ["emr", "run"]:
            play_emr("completed", delay_s=0.5)
        assert cli.main(argv) == 0, argv
    yield operator_calls
    server.stop()


def test_the_documented_commands_need_every_statement_of_the_operator_policy(
    commands: Calls, iam_simulator, capsys
):
    capsys.readouterr()
    operations = {(service, op) for service, op, _ in commands.calls}
    assert {("elasticmapreduce", "RunJobFlow"), ("iam", "CreateRole"), ("s3", "PutObject"),
            ("ec2", "CreateTags"), ("ec2", "CreateSecurityGroup")} <= operations  # fmt: skip
    full = operator(commands.buckets(), commands.region)
    assert commands.refused(full, iam_simulator) == []
    policy = iam.operator_policy(BUCKET, "fruits", "123456789012", "eu-west-3")
    for statement in policy["Statement"]:
        sid = statement["Sid"]
        without = full.without(f"operator-policy-{BUCKET}-fruits", sid)
        refused = commands.refused(without, iam_simulator)
        if sid in NOT_EXERCISED:
            assert refused == [], (sid, refused)
            continue
        assert refused, f"{sid}: no command needed it"
        print(f"without {sid}: refused {refused[0]}")
        # the refusal names the operation, the action and the resource
        operation, _, rest = refused[0].partition(": ")
        action, _, resource = rest.partition(" on ")
        assert operation and action.split(":")[0] in ("s3", "iam", "elasticmapreduce", "ec2")
        assert resource.startswith(("arn:aws:", "*")), refused[0]
    assert json.dumps(policy)  # the document as `emr policy` would print it
