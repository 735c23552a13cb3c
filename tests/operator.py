"""The operator's permissions, enforced in the tooling's tests: every AWS call the tooling makes
(``fruits_tools`` on the call stack; the tests' own setup calls and the chain's runtime are not
the operator's) is recorded through botocore's events, mapped to the IAM actions AWS authorizes it
with, and decided by the IAM simulator against ``emr/iam/operator-policy.json``.

The mapping names, per API operation, the action, the resource ARN and the request context
(S3's operations to their documented actions; implied checks such as ``iam:PassRole`` of the
roles ``RunJobFlow`` passes). The decision is the simulator's.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from fruits_tools import iam
from tests.iamsim import ACCOUNT, Principal, Simulator

#: S3 API operations whose IAM action is not ``s3:<operation>``.
S3_ACTIONS = {
    "ListObjectsV2": "s3:ListBucket", "ListObjects": "s3:ListBucket", "HeadBucket": "s3:ListBucket",
    "HeadObject": "s3:GetObject", "CopyObject": "s3:PutObject", "DeleteObjects": "s3:DeleteObject",
    "CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject", "ListParts": "s3:ListMultipartUploadParts",
    "PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "GetBucketLifecycleConfiguration": "s3:GetLifecycleConfiguration",
}  # fmt: skip
#: Calls IAM does not authorize (any credentials may make them).
UNCHECKED = {("sts", "GetCallerIdentity")}
_EMR = "elasticmapreduce.amazonaws.com"


def operator(
    buckets: tuple[str, ...], region: str, prefixes: tuple[str, ...] = ("fruits",)
) -> Principal:
    """The person running ``fruits-tools``, with exactly the operator policy, once per project
    (bucket and prefix) it works with."""
    policies = {f"operator-policy-{b}-{p}": iam.operator_policy(b, p, ACCOUNT, region)
                for b in buckets for p in prefixes}  # fmt: skip
    return Principal.role("fruits-operator", **policies)


@dataclass(frozen=True)
class Check:
    action: str
    resource: str
    context: tuple = ()


def checks(service: str, operation: str, params: dict, region: str) -> list[Check]:
    """The IAM checks one API call needs (pure)."""
    if (service, operation) in UNCHECKED:
        return []
    if service == "s3":
        return _s3(operation, params)
    arn = f"arn:aws:{service}:{region}:{ACCOUNT}"
    if service == "iam":
        return _iam(operation, params)
    if service == "elasticmapreduce":
        found = []
        clusters = params.get("JobFlowIds") or [
            params.get("ClusterId") or params.get("JobFlowId") or
            (params.get("ExecutionEngine") or {}).get("Id")
        ]  # fmt: skip
        resource = "*"
        if operation == "StartNotebookExecution":
            resource = f"{arn}:cluster/{clusters[0]}"
            found.append(Check("iam:PassRole", _role(params["ServiceRole"]),
                               (("iam:PassedToService", _EMR),)))  # fmt: skip
        elif operation == "DescribeNotebookExecution":
            resource = f"{arn}:notebook-execution/{params['NotebookExecutionId']}"
        elif operation == "RunJobFlow":
            for role in (params["ServiceRole"], params["JobFlowRole"]):
                found.append(Check("iam:PassRole", _role(role), (("iam:PassedToService", _EMR),)))
        elif clusters[0]:
            return found + [Check(f"{service}:{operation}", f"{arn}:cluster/{c}") for c in clusters]
        return [*found, Check(f"{service}:{operation}", resource)]
    if service == "emr-serverless":
        return _serverless(operation, params, region)
    if service == "ec2":
        kinds = {"subnet": "subnet", "vpc": "vpc", "sg": "security-group"}
        if operation == "CreateTags":
            keys = tuple(sorted(t["Key"] for t in params["Tags"]))
            return [Check("ec2:CreateTags", f"{arn}:{kinds[r.split('-')[0]]}/{r}",
                          (("aws:TagKeys", keys),)) for r in params["Resources"]]  # fmt: skip
        if operation == "CreateSecurityGroup":
            group = f"{arn}:security-group/sg-new"
            found = [Check("ec2:CreateSecurityGroup", f"{arn}:vpc/{params['VpcId']}"),
                     Check("ec2:CreateSecurityGroup", group)]  # fmt: skip
            for spec in params.get("TagSpecifications", []):  # tagging on create: CreateTags too
                keys = tuple(sorted(t["Key"] for t in spec["Tags"]))
                context = (("aws:TagKeys", keys), ("ec2:CreateAction", "CreateSecurityGroup"))
                found.append(Check("ec2:CreateTags", group, context))
            return found
        return [Check(f"ec2:{operation}", "*")]
    return [Check(f"{service}:{operation}", "*")]


def _serverless(operation: str, params: dict, region: str) -> list[Check]:
    """EMR Serverless's checks (its service authorization reference): applications and job
    runs by ARN; tags given on create need TagResource; StartJobRun passes the job role."""
    apps = f"arn:aws:emr-serverless:{region}:{ACCOUNT}:/applications"
    app = params.get("applicationId", "*")
    tags = params.get("tags") or {}
    context = tuple((f"aws:RequestTag/{k}", v) for k, v in sorted(tags.items()))
    if operation == "CreateApplication":  # no resource-level permission: "*"
        found = [Check("emr-serverless:CreateApplication", "*", context)]
        return found + ([Check("emr-serverless:TagResource", f"{apps}/*")] if tags else [])
    if operation == "StartJobRun":
        found = [Check("iam:PassRole", params["executionRoleArn"],
                       (("iam:PassedToService", "emr-serverless.amazonaws.com"),)),
                 Check("emr-serverless:StartJobRun", f"{apps}/{app}")]  # fmt: skip
        if params.get("tags"):
            found.append(Check("emr-serverless:TagResource", f"{apps}/{app}/jobruns/*"))
        return found
    if "jobRunId" in params:
        return [Check(f"emr-serverless:{operation}", f"{apps}/{app}/jobruns/{params['jobRunId']}")]
    return [Check(f"emr-serverless:{operation}", f"{apps}/{app}")]


def _role(name: str) -> str:
    # the instance profile and its role share their name (iam.INSTANCE_ROLE)
    return f"arn:aws:iam::{ACCOUNT}:role/{name}"


def _iam(operation: str, params: dict) -> list[Check]:
    found = []
    if "InstanceProfileName" in params:
        profile = f"arn:aws:iam::{ACCOUNT}:instance-profile/{params['InstanceProfileName']}"
        found.append(Check(f"iam:{operation}", profile))
        if operation == "AddRoleToInstanceProfile":  # IAM also checks passing the role
            found.append(Check("iam:PassRole", _role(params["RoleName"])))
        return found
    context = (("iam:PolicyARN", params["PolicyArn"]),) if "PolicyArn" in params else ()
    return [Check(f"iam:{operation}", _role(params["RoleName"]), context)]


def _s3(operation: str, params: dict) -> list[Check]:
    bucket = params.get("Bucket", "")
    action = S3_ACTIONS.get(operation, f"s3:{operation}")
    if operation in ("ListObjectsV2", "ListObjects"):
        return [Check(action, f"arn:aws:s3:::{bucket}", (("s3:prefix", params.get("Prefix", "")),))]
    if "Key" not in params and operation != "DeleteObjects":
        return [Check(action, f"arn:aws:s3:::{bucket}")]
    if operation == "DeleteObjects":
        keys = [o["Key"] for o in params["Delete"]["Objects"]]
        return [Check(action, f"arn:aws:s3:::{bucket}/{k}") for k in keys]
    found = [Check(action, f"arn:aws:s3:::{bucket}/{params['Key']}")]
    if operation == "CopyObject":
        source = params["CopySource"]
        source = source if isinstance(source, str) else f"{source['Bucket']}/{source['Key']}"
        found.insert(0, Check("s3:GetObject", f"arn:aws:s3:::{source.lstrip('/')}"))
    return found


@dataclass
class Calls:
    """The tooling's AWS calls, recorded on a boto3 session's events."""

    region: str
    #: the project prefixes the test works with (``--prefix``)
    prefixes: tuple[str, ...] = ("fruits",)
    calls: list[tuple[str, str, dict]] = field(default_factory=list)

    def install(self, session) -> Calls:
        session.events.register("before-parameter-build", self._record)
        return self

    def _record(self, params, model, **_) -> None:
        frame, ours = sys._getframe(1), False
        while frame is not None and not ours:
            name = frame.f_globals.get("__name__", "")
            ours = name.startswith("fruits_tools")
            frame = frame.f_back
        if ours:
            self.calls.append((model.service_model.endpoint_prefix, model.name, dict(params)))

    def buckets(self) -> tuple[str, ...]:
        """The buckets the tooling worked with (each a project of the operator's)."""
        return tuple(sorted({p["Bucket"] for _, _, p in self.calls if p.get("Bucket")}))

    def refused(self, principal: Principal, simulator: Simulator) -> list[str]:
        """``<operation>: <action> on <resource>`` for every check the policy refuses."""
        found = []
        for service, operation, params in self.calls:
            for check in checks(service, operation, params, self.region):
                context = {k: list(v) if isinstance(v, tuple) else v for k, v in check.context}
                if not simulator.allows(principal, check.action, check.resource, context):
                    where = f" with {context}" if context else ""
                    found.append(f"{operation}: {check.action} on {check.resource}{where}")
        return found
