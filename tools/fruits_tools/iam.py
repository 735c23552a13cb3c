"""The project's own IAM roles for EMR: nothing of AWS's default roles.

- ``fruits-emr-ec2``: the nodes' role and instance profile. Its only policy is
  ``emr/iam/instance-profile-policy.json`` (the project's S3 prefixes, plus the KMS key when the
  bucket uses one). No AWS managed policy: ``AmazonElasticMapReduceforEC2Role`` grants ``s3:*``
  and more on ``*``, which would make any inline restriction pointless.
- ``fruits-emr-service``: EMR's service role, v2 (``AmazonEMRServicePolicy_v2``), which acts only
  on resources tagged ``for-use-with-amazon-emr-managed-policies=true`` (the launcher tags the
  cluster), plus ``iam:PassRole`` of the instance role to EC2.

Every request is built by :func:`create_requests` / :func:`delete_requests` (pure, validated
against botocore's IAM model in the tests; ``--dry-run`` prints them).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

from fruits_tools import assets
from helpers import defaults

INSTANCE_ROLE = "fruits-emr-ec2"
SERVICE_ROLE = "fruits-emr-service"
#: EMR Studio's service role for ``notebooks-execution`` (``emr studio-role create``).
STUDIO_ROLE = "fruits-emr-studio"
#: EMR Serverless job runs' role (made by whoever owns the account: emr/iam/serverless-*.json).
SERVERLESS_JOB_ROLE = "fruits-serverless-job"
STUDIO_POLICY_NAME = "fruits-notebook-execution"
SERVICE_MANAGED_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
INSTANCE_POLICY_NAME = "fruits-s3"
SERVICE_POLICY_NAME = "fruits-pass-instance-role"
#: The tag AmazonEMRServicePolicy_v2 requires on the cluster (and on a subnet or security
#: groups of your own).
MANAGED_POLICY_TAG = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
TAGS = [{"Key": "project", "Value": "fruits"}]


def render(name: str, **values: str) -> dict | list:
    """``emr/iam/<name>`` with its ``${...}`` placeholders filled in."""
    text = Path(assets.emr_file(f"iam/{name}")).read_text()
    return json.loads(string.Template(text).substitute(**values))


def instance_policy(
    bucket: str,
    prefix: str = "fruits",
    kms_key_arn: str | None = None,
    region: str = defaults.REGION,
) -> dict:
    """The nodes' policy: read ``input/`` and ``code/``, write ``output/`` and the logs (never
    delete EMR's logs), EMRFS folder markers, the region's EMR and Amazon Linux package
    repositories (S3 buckets, read through an S3 endpoint from a private subnet), and the KMS
    key when one is given.

    Listing is limited to the project's prefixes with ``StringLikeIfExists`` on ``s3:prefix``:
    S3 answers a HEAD or GET of a missing key with 404 only to a caller allowed
    ``s3:ListBucket`` on the bucket, evaluated without ``s3:prefix`` (the request has none), and
    with 403 to anyone else (GetObject/HeadObject API reference). With ``StringLike`` every
    existence check of Hadoop and Spark (an output folder, ``_SUCCESS``, a staging path) failed
    with AccessDenied. A list request always carries ``s3:prefix`` ("" without one), so listing
    outside the prefixes stays refused."""
    policy = render(
        "instance-profile-policy.json", BUCKET=bucket, PREFIX=prefix.strip("/"), REGION=region
    )
    if kms_key_arn:
        policy["Statement"] += render(
            "instance-profile-kms-statements.json", KMS_KEY_ARN=kms_key_arn
        )
    return policy


def serverless_job_policy(
    bucket: str, prefix: str = "fruits", kms_key_arn: str | None = None
) -> dict:
    """EMR Serverless job runs' runtime role (emr/iam/serverless-job-policy.json): the nodes'
    S3 prefixes (read input and code, write output) and the job runs' logs, appended only; the
    KMS key when the bucket uses one. The workers need nothing else: no package repository (the
    archive holds the packages), no EMR log bucket."""
    policy = render("serverless-job-policy.json", BUCKET=bucket, PREFIX=prefix.strip("/"))
    if kms_key_arn:
        policy["Statement"] += render(
            "instance-profile-kms-statements.json", KMS_KEY_ARN=kms_key_arn
        )
    return policy


def serverless_operator_policy(
    bucket: str, prefix: str, account: str, region: str, job_role: str = SERVERLESS_JOB_ROLE
) -> dict:
    """What a person running ``fruits-tools serverless`` needs and no more
    (emr/iam/serverless-operator-policy.json): the project's prefix, applications and job runs
    of this account, and passing the job role to EMR Serverless only. No IAM or EC2 rights."""
    return render(
        "serverless-operator-policy.json", BUCKET=bucket, PREFIX=prefix.strip("/"),
        ACCOUNT=account, REGION=region, JOB_ROLE=job_role,
    )  # fmt: skip


def service_policy(account: str, kms_key_arn: str | None = None) -> dict:
    """The service role's inline policy: pass the instance role to EC2 (and EBS encryption
    with the project's key)."""
    policy = render("service-role-policy.json", ACCOUNT=account, INSTANCE_ROLE=INSTANCE_ROLE)
    if kms_key_arn:
        policy["Statement"] += render("service-role-kms-statements.json", KMS_KEY_ARN=kms_key_arn)
    return policy


def operator_policy(bucket: str, prefix: str, account: str, region: str) -> dict:
    """What the person running ``fruits-tools`` needs and no more (emr/iam/operator-policy.json):
    the project's bucket and prefix, the project's roles (passed to EMR only, the v2 service
    policy the only one attached), clusters, security configurations and notebook executions,
    and the network's tags for EMR. The tests decide every call the tooling makes against it."""
    return render(
        "operator-policy.json", BUCKET=bucket, PREFIX=prefix.strip("/"), ACCOUNT=account,
        REGION=region,
    )  # fmt: skip


def studio_policy(
    bucket: str, prefix: str, account: str, region: str, kms_key_arn: str | None = None
) -> dict:
    """EMR Studio's service role for a notebook execution (emr/iam/studio-policy.json): read
    the staged Studio copies, write the executed notebooks, the bucket's encryption, the
    cluster it runs on, and the tagged network interfaces it attaches through (the statements
    of AWS's EMR Studio service role, limited to the tag AmazonEMRServicePolicy_v2 uses); the
    project's key when the bucket has one."""
    policy = render(
        "studio-policy.json", BUCKET=bucket, PREFIX=prefix.strip("/"), ACCOUNT=account,
        REGION=region,
    )  # fmt: skip
    if kms_key_arn:
        policy["Statement"] += render("studio-kms-statements.json", KMS_KEY_ARN=kms_key_arn)
    return policy


def studio_requests(
    bucket: str, prefix: str, account: str, region: str, kms_key_arn: str | None = None
) -> list[tuple[str, dict]]:
    """IAM requests creating EMR Studio's role for notebook executions (trusted by EMR of this
    account only, as the service role is)."""
    trust = render("service-trust-policy.json", ACCOUNT=account, REGION=region)
    policy = studio_policy(bucket, prefix, account, region, kms_key_arn)
    return [
        ("CreateRole", {"RoleName": STUDIO_ROLE, "Tags": TAGS,
                        "AssumeRolePolicyDocument": json.dumps(trust),
                        "Description": "Fruits! EMR Studio notebook executions"}),
        ("PutRolePolicy", {"RoleName": STUDIO_ROLE, "PolicyName": STUDIO_POLICY_NAME,
                           "PolicyDocument": json.dumps(policy)}),
    ]  # fmt: skip


def studio_delete_requests() -> list[tuple[str, dict]]:
    return [
        ("DeleteRolePolicy", {"RoleName": STUDIO_ROLE, "PolicyName": STUDIO_POLICY_NAME}),
        ("DeleteRole", {"RoleName": STUDIO_ROLE}),
    ]


def documents(
    bucket: str, prefix: str, account: str, region: str, kms_key_arn: str | None = None
) -> dict[str, dict]:
    """Every policy document the roles use, by name (what the linter checks)."""
    return {
        "instance-profile-policy": instance_policy(bucket, prefix, kms_key_arn, region),
        "ec2-trust-policy": render("ec2-trust-policy.json"),
        "service-trust-policy": render("service-trust-policy.json", ACCOUNT=account, REGION=region),
        "service-role-policy": service_policy(account, kms_key_arn),
        "operator-policy": operator_policy(bucket, prefix, account, region),
        "studio-policy": studio_policy(bucket, prefix, account, region, kms_key_arn),
        "serverless-job-policy": serverless_job_policy(bucket, prefix, kms_key_arn),
        "serverless-operator-policy": serverless_operator_policy(bucket, prefix, account, region),
        "serverless-trust-policy": render(
            "serverless-trust-policy.json", ACCOUNT=account, REGION=region
        ),
    }


def create_requests(
    bucket: str, prefix: str, account: str, region: str, kms_key_arn: str | None = None
) -> list[tuple[str, dict]]:
    """IAM requests creating both roles and the instance profile, in order."""
    docs = documents(bucket, prefix, account, region, kms_key_arn)
    return [
        ("CreateRole", {"RoleName": INSTANCE_ROLE, "Tags": TAGS,
                        "AssumeRolePolicyDocument": json.dumps(docs["ec2-trust-policy"]),
                        "Description": "Fruits! EMR nodes: the project's S3 prefixes only"}),
        ("PutRolePolicy", {"RoleName": INSTANCE_ROLE, "PolicyName": INSTANCE_POLICY_NAME,
                           "PolicyDocument": json.dumps(docs["instance-profile-policy"])}),
        ("CreateInstanceProfile", {"InstanceProfileName": INSTANCE_ROLE, "Tags": TAGS}),
        ("AddRoleToInstanceProfile", {"InstanceProfileName": INSTANCE_ROLE,
                                      "RoleName": INSTANCE_ROLE}),
        ("CreateRole", {"RoleName": SERVICE_ROLE, "Tags": TAGS,
                        "AssumeRolePolicyDocument": json.dumps(docs["service-trust-policy"]),
                        "Description": "Fruits! EMR service role (v2 managed policy)"}),
        ("AttachRolePolicy", {"RoleName": SERVICE_ROLE, "PolicyArn": SERVICE_MANAGED_POLICY}),
        ("PutRolePolicy", {"RoleName": SERVICE_ROLE, "PolicyName": SERVICE_POLICY_NAME,
                           "PolicyDocument": json.dumps(docs["service-role-policy"])}),
    ]  # fmt: skip


def delete_requests() -> list[tuple[str, dict]]:
    """IAM requests removing what :func:`create_requests` made, in an order IAM accepts."""
    return [
        ("RemoveRoleFromInstanceProfile", {"InstanceProfileName": INSTANCE_ROLE,
                                           "RoleName": INSTANCE_ROLE}),
        ("DeleteInstanceProfile", {"InstanceProfileName": INSTANCE_ROLE}),
        ("DeleteRolePolicy", {"RoleName": INSTANCE_ROLE, "PolicyName": INSTANCE_POLICY_NAME}),
        ("DeleteRole", {"RoleName": INSTANCE_ROLE}),
        ("DetachRolePolicy", {"RoleName": SERVICE_ROLE, "PolicyArn": SERVICE_MANAGED_POLICY}),
        ("DeleteRolePolicy", {"RoleName": SERVICE_ROLE, "PolicyName": SERVICE_POLICY_NAME}),
        ("DeleteRole", {"RoleName": SERVICE_ROLE}),
    ]  # fmt: skip


#: Re-running ``roles create`` updates what exists; ``roles delete`` skips what is gone.
_ALREADY = {"EntityAlreadyExists", "LimitExceeded"}
_GONE = {"NoSuchEntity"}


def send(requests: list[tuple[str, dict]], client, skip_codes: set[str], echo=print) -> list[str]:
    """Send IAM requests in order; a request whose error code is in ``skip_codes`` is skipped
    (said so), any other error stops. Returns what was done, one line each."""
    from botocore.exceptions import ClientError

    done = []
    for operation, params in requests:
        what = f"{operation} {params.get('RoleName') or params.get('InstanceProfileName')}"
        try:
            getattr(client, _snake(operation))(**params)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code not in skip_codes:
                raise
            if operation == "CreateRole":  # keep the trust policy current on a re-run
                client.update_assume_role_policy(
                    RoleName=params["RoleName"], PolicyDocument=params["AssumeRolePolicyDocument"]
                )
            what += f" (skipped: {code})"
        echo(what)
        done.append(what)
    return done


def apply(requests: list[tuple[str, dict]], client, creating: bool, echo=print) -> list[str]:
    """Send create requests (what exists is brought up to date) or delete requests (what is
    gone is skipped)."""
    return send(requests, client, _ALREADY if creating else _GONE, echo)


def create_roles(client, bucket: str, prefix: str, account: str, region: str,
                 kms_key_arn: str | None = None, echo=print) -> list[str]:  # fmt: skip
    """Create (or bring up to date) both roles and the instance profile."""
    requests = create_requests(bucket, prefix, account, region, kms_key_arn)
    return send(requests, client, _ALREADY, echo)


def delete_roles(client, echo=print) -> list[str]:
    """Delete both roles and the instance profile; what is already gone is skipped."""
    return send(delete_requests(), client, _GONE, echo)


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
