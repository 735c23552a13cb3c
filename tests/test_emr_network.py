"""A network the v2 service role accepts: the launch is refused in one line, before any cost,
when the subnet, its VPC or the security groups lack the tag AmazonEMRServicePolicy_v2 needs;
``emr network prepare`` adds it. Against moto's EC2 (over HTTP), with AWS's published policy
document evaluated by the IAM simulator for the EC2 actions EMR performs in that network."""

from __future__ import annotations

import json

import boto3
import pytest

from fruits_tools import cli, network
from tests.iamsim import ACCOUNT, Principal, Simulator
from tests.test_aws_iam import REGION, start_moto

#: The version of AWS's managed policy the tests evaluate (moto ships AWS's documents; a new
#: version is a reason to look again).
POLICY_VERSION = "v6"
BUCKET = "fruits-net"
ARGS = ["--bucket", BUCKET, "--region", REGION]


def _service_policy() -> dict:
    from moto.iam import aws_managed_policies

    managed = json.loads(aws_managed_policies.aws_managed_policies_data)
    policy = managed["AmazonEMRServicePolicy_v2"]
    assert policy["DefaultVersionId"] == POLICY_VERSION, policy["DefaultVersionId"]
    return policy["Document"]


@pytest.fixture(scope="module")
def simulator():
    simulator = Simulator().start()
    yield simulator
    simulator.stop()


@pytest.fixture
def ec2(monkeypatch, operator_calls):
    server = start_moto(monkeypatch, managed_policies=False)
    client = boto3.client("ec2", region_name=REGION)
    vpc = client.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = client.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    yield {"client": client, "vpc": vpc, "subnet": subnet}
    server.stop()


def _decisions(simulator: Simulator, client, subnet: str, groups: tuple[str, ...] = ()) -> dict:
    """What AmazonEMRServicePolicy_v2 decides for EMR's EC2 requests in this network, with the
    resources' tags as EC2 holds them."""
    role = Principal.role("fruits-emr-service", AmazonEMRServicePolicy_v2=_service_policy())
    found = network.describe(client, subnet, groups)

    def tags(resource: dict) -> dict:
        return {f"aws:ResourceTag/{t['Key']}": t["Value"] for t in resource.get("Tags", [])}

    def arn(kind: str, ident: str) -> str:
        return f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{ident}"

    asks = {
        "RunInstances in the subnet": ("ec2:RunInstances", arn("subnet", subnet), found.subnet),
        "CreateFleet in the subnet": ("ec2:CreateFleet", arn("subnet", subnet), found.subnet),
        "CreateNetworkInterface in the subnet": (
            "ec2:CreateNetworkInterface", arn("subnet", subnet), found.subnet),
    }  # fmt: skip
    if groups:
        for group in found.security_groups:
            asks[f"RunInstances with {group['GroupId']}"] = (
                "ec2:RunInstances", arn("security-group", group["GroupId"]), group)  # fmt: skip
    else:
        asks["CreateSecurityGroup in the VPC"] = (
            "ec2:CreateSecurityGroup", arn("vpc", found.vpc["VpcId"]), found.vpc)  # fmt: skip
    return {what: simulator.decide(role, action, resource, tags(held))
            for what, (action, resource, held) in asks.items()}  # fmt: skip


def test_an_untagged_subnet_is_refused_in_one_line_and_the_policy_agrees(ec2, simulator, capsys):
    assert cli.main(["emr", "network", "check", "--subnet-id", ec2["subnet"], *ARGS]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"error: subnet {ec2['subnet']} lacks the tag "
        "for-use-with-amazon-emr-managed-policies=true; "
        f"VPC {ec2['vpc']} lacks the tag for-use-with-amazon-emr-managed-policies=true (EMR "
        "creates its default security groups there): run emr network prepare --subnet-id "
        f"{ec2['subnet']} (AmazonEMRServicePolicy_v2 launches only into tagged networks)"
    )
    assert set(_decisions(simulator, ec2["client"], ec2["subnet"]).values()) == {"ImplicitlyDenied"}


def test_without_a_subnet_a_tagged_one_is_needed(ec2, capsys):
    assert cli.main(["emr", "network", "check", *ARGS]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no subnet tagged for-use-with-amazon-emr-managed-policies=true in eu-west-3: "
        "pass --subnet-id, after emr network prepare --subnet-id S"
    )


def test_prepare_tags_the_subnet_and_its_vpc_and_the_policy_then_allows(ec2, simulator, capsys):
    assert cli.main(["emr", "network", "prepare", "--subnet-id", ec2["subnet"], *ARGS]) == 0
    done = json.loads(capsys.readouterr().out)
    assert sorted(done["tagged"]) == sorted([ec2["subnet"], ec2["vpc"]])
    # found without --subnet-id now, and accepted
    assert cli.main(["emr", "network", "check", *ARGS]) == 0
    assert json.loads(capsys.readouterr().out)["subnet"] == ec2["subnet"]
    assert set(_decisions(simulator, ec2["client"], ec2["subnet"]).values()) == {"Allowed"}


def test_prepare_can_create_tagged_security_groups_instead(ec2, simulator, capsys):
    argv = ["emr", "network", "prepare", "--subnet-id", ec2["subnet"], "--create-security-groups"]
    assert cli.main([*argv, *ARGS]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["tagged"] == [ec2["subnet"]]  # the VPC stays as it is
    groups = (done["security_groups"]["primary"], done["security_groups"]["core"])
    check = ["emr", "network", "check", "--subnet-id", ec2["subnet"],
             "--security-groups", ",".join(groups), *ARGS]  # fmt: skip
    assert cli.main(check) == 0
    decisions = _decisions(simulator, ec2["client"], ec2["subnet"], groups)
    assert set(decisions.values()) == {"Allowed"}, decisions
    # an untagged group of the user's is refused by name
    other = ec2["client"].create_security_group(
        GroupName="mine", Description="untagged", VpcId=ec2["vpc"]
    )["GroupId"]
    check[check.index(",".join(groups))] = f"{groups[0]},{other}"
    assert cli.main(check) == 2
    assert f"security group {other} lacks the tag" in capsys.readouterr().err
    assert (
        _decisions(simulator, ec2["client"], ec2["subnet"], (other,))[f"RunInstances with {other}"]
        == "ImplicitlyDenied"
    )


def test_a_launch_into_an_untagged_network_is_refused_before_it_costs(ec2, capsys):
    """emr run's pre-flight: nothing is created (no RunJobFlow) when the network would be
    refused; the default subnet of an account is untagged."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET,
                         CreateBucketConfiguration={"LocationConstraint": REGION})  # fmt: skip
    client.put_object(Bucket=BUCKET, Key="fruits/code/bootstrap.sh", Body=b"#!")
    argv = ["emr", "run", "--subnet-id", ec2["subnet"], "--no-security-configuration", *ARGS]
    assert cli.main(argv) == 2
    assert "lacks the tag for-use-with-amazon-emr-managed-policies=true" in capsys.readouterr().err
    assert boto3.client("emr", region_name=REGION).list_clusters()["Clusters"] == []
