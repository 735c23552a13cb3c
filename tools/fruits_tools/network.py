"""The network a launch uses, as EMR's service role v2 accepts it.

``AmazonEMRServicePolicy_v2`` lets EMR launch instances (``ec2:RunInstances``, ``CreateFleet``,
``CreateNetworkInterface``) only in subnets and security groups tagged
``for-use-with-amazon-emr-managed-policies=true`` (its statement ``CreateInTaggedNetwork``), and
create EMR's default security groups only in a VPC with that tag
(``CreateDefaultSecurityGroupInVPCWithEMRTags``). An untagged network fails the launch after the
cluster has started provisioning, with a message about the service role. :func:`check` refuses
it first, in one line; :func:`prepare` tags the subnet and its VPC, or creates tagged
EMR-managed security groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fruits_tools import iam

TAG_KEY, TAG_VALUE = iam.MANAGED_POLICY_TAG["Key"], iam.MANAGED_POLICY_TAG["Value"]
TAG = f"{TAG_KEY}={TAG_VALUE}"


def _tagged(resource: dict) -> bool:
    return any(t["Key"] == TAG_KEY and t["Value"] == TAG_VALUE for t in resource.get("Tags", []))


@dataclass
class Network:
    """A subnet, its VPC and the security groups a launch would use, as EC2 describes them."""

    subnet: dict
    vpc: dict
    security_groups: list[dict] = field(default_factory=list)

    def problems(self) -> list[str]:
        """What ``AmazonEMRServicePolicy_v2`` would refuse, one phrase each."""
        found = []
        if not _tagged(self.subnet):
            found.append(f"subnet {self.subnet['SubnetId']} lacks the tag {TAG}")
        if self.security_groups:
            found += [f"security group {g['GroupId']} lacks the tag {TAG}"
                      for g in self.security_groups if not _tagged(g)]  # fmt: skip
        elif not _tagged(self.vpc):
            found.append(
                f"VPC {self.vpc['VpcId']} lacks the tag {TAG} (EMR creates its default security "
                "groups there)"
            )
        return found


def describe(ec2, subnet_id: str, security_group_ids: tuple[str, ...] = ()) -> Network:
    """The subnet, its VPC and the given security groups; one line when one does not exist."""
    from botocore.exceptions import ClientError

    try:
        subnet = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"][0]
        vpc = ec2.describe_vpcs(VpcIds=[subnet["VpcId"]])["Vpcs"][0]
        groups = (
            ec2.describe_security_groups(GroupIds=list(security_group_ids))["SecurityGroups"]
            if security_group_ids
            else []
        )
    except ClientError as err:
        error = err.response.get("Error", {})
        raise ValueError(f"{error.get('Code')}: {error.get('Message')}") from None
    return Network(subnet, vpc, groups)


def check(ec2, subnet_id: str, security_group_ids: tuple[str, ...] = ()) -> Network:
    """Refuse, in one line and before any cost, a network the v2 service role cannot use."""
    network = describe(ec2, subnet_id, security_group_ids)
    problems = network.problems()
    if problems:
        raise ValueError(
            "; ".join(problems) + f": run emr network prepare --subnet-id {subnet_id} "
            "(AmazonEMRServicePolicy_v2 launches only into tagged networks)"
        )
    return network


def find_subnet(ec2, region: str) -> str:
    """A subnet of the region carrying the tag (the first by availability zone, then id)."""
    subnets = ec2.describe_subnets(Filters=[{"Name": f"tag:{TAG_KEY}", "Values": [TAG_VALUE]}])[
        "Subnets"
    ]
    if not subnets:
        raise ValueError(
            f"no subnet tagged {TAG} in {region}: pass --subnet-id, after "
            "emr network prepare --subnet-id S"
        )
    return sorted(subnets, key=lambda s: (s["AvailabilityZone"], s["SubnetId"]))[0]["SubnetId"]


def prepare(ec2, subnet_id: str, create_security_groups: bool = False) -> dict:
    """Tag the subnet (and its VPC, where EMR creates its default security groups), or with
    ``create_security_groups`` create EMR-managed security groups for the primary and the
    other nodes, tagged, in the subnet's VPC (then the VPC needs no tag). Returns what it did."""
    network = describe(ec2, subnet_id)
    done: dict = {"subnet": subnet_id, "vpc": network.vpc["VpcId"], "tagged": []}
    tag = [{"Key": TAG_KEY, "Value": TAG_VALUE}]
    targets = [subnet_id] if _tagged(network.subnet) is False else []
    if not create_security_groups and not _tagged(network.vpc):
        targets.append(network.vpc["VpcId"])
    if targets:
        ec2.create_tags(Resources=targets, Tags=tag)
        done["tagged"] = targets
    if create_security_groups:
        groups = {}
        for role in ("primary", "core"):
            created = ec2.create_security_group(
                GroupName=f"fruits-emr-{role}-{subnet_id}",
                Description=f"EMR-managed security group for the fruits {role} node(s)",
                VpcId=network.vpc["VpcId"],
                TagSpecifications=[
                    {"ResourceType": "security-group", "Tags": [*tag, *iam.TAGS]}
                ],  # fmt: skip
            )
            groups[role] = created["GroupId"]
        done["security_groups"] = groups
    return done
