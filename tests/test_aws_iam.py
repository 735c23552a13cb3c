"""The project's IAM roles: every policy linted (parliament), every request valid for IAM's
API, the roles created and deleted in a local IAM (moto over HTTP), and the instance profile's
policy evaluated by moto's policy engine: nothing outside the project's prefixes."""

from __future__ import annotations

import json
import os
import urllib.request

import boto3
import parliament
import pytest

from fruits_tools import iam
from tests.awsmodels import assert_valid_request
from tests.clirun import run_cli

BUCKET, PREFIX, ACCOUNT, REGION = "fruits-bucket", "fruits", "123456789012", "eu-west-3"
KEY = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

#: Findings accepted, each for a reason parliament cannot know.
ACCEPTED = {
    # trust policies name a principal, never a resource; parliament reads every document as
    # an identity policy
    ("ec2-trust-policy", "MALFORMED"),
    ("service-trust-policy", "MALFORMED"),
    ("serverless-trust-policy", "MALFORMED"),
    # AmazonEMRServicePolicy_v2 needs the service role to pass the instance role to EC2 (AWS's
    # documented statement, limited to that one role and to ec2.amazonaws.com)
    ("service-role-policy", "PERMISSIONS_MANAGEMENT_ACTIONS"),
    # the operator creates the project's roles (fruits-emr-* only, the v2 service policy the only
    # one attached, passed to EMR only) and the bucket's TLS-only policy: that is its job
    ("operator-policy", "PERMISSIONS_MANAGEMENT_ACTIONS"),
    # ... and it owns the bucket whose policy it sets, so that policy can grant it nothing more
    ("operator-policy", "RESOURCE_POLICY_PRIVILEGE_ESCALATION"),
    # EMR Studio's role lets EMR attach the execution's network interface to the cluster
    # (ec2:CreateNetworkInterfacePermission), on interfaces carrying the EMR tag only ...
    ("studio-policy", "PERMISSIONS_MANAGEMENT_ACTIONS"),
    # running a job means passing its role: one role, to EMR Serverless only
    ("serverless-operator-policy", "PERMISSIONS_MANAGEMENT_ACTIONS"),
    # ... and splits CreateNetworkInterface's resource types across two statements with their
    # own tag conditions (the new interface by request tag, subnet and group by resource tag),
    # as AWS's EMR Studio service role does; tests/test_studio_role.py evaluates both halves
    ("studio-policy", "RESOURCE_MISMATCH"),
}


def start_moto(monkeypatch, managed_policies: bool = True):
    """moto's server in this process on 127.0.0.1 (real HTTP), with AWS's managed policies
    when asked (slower); boto3 pointed at it with throwaway credentials. Returns the server."""
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true" if managed_policies else "false")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"))
    return server


@pytest.fixture
def moto_endpoint(monkeypatch, operator_calls):
    server = start_moto(monkeypatch)
    yield os.environ["AWS_ENDPOINT_URL"]
    server.stop()


def all_documents() -> dict[str, dict]:
    from fruits_tools import s3_staging

    docs = iam.documents(BUCKET, PREFIX, ACCOUNT, REGION, KEY)
    docs["bucket-policy"] = {
        "Version": "2012-10-17",
        "Statement": [s3_staging.tls_only_statement(BUCKET)],
    }
    return docs


@pytest.mark.parametrize("name", sorted(all_documents()))
def test_policy_documents_pass_the_linter(name):
    document = all_documents()[name]
    analyzed = parliament.analyze_policy_string(
        json.dumps(document), include_community_auditors=True
    )
    findings = {(name, f.issue) for f in analyzed.findings}
    assert findings <= ACCEPTED, [(f.issue, f.detail, f.location) for f in analyzed.findings]


def json_objects(text: str) -> list[dict]:
    """The JSON objects printed one after the other in ``text``."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        obj, at = decoder.raw_decode(text, at)
        objects.append(obj)
    return objects


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("kms", [None, KEY])
def test_no_wildcard_action_or_resource_where_a_narrower_one_exists(kms, iam_simulator):
    docs = iam.documents(BUCKET, PREFIX, ACCOUNT, REGION, kms)
    for name, document in docs.items():
        for statement in document["Statement"]:
            actions = _listed(statement["Action"])
            assert not [a for a in actions if a == "*" or a.endswith(":*")], (name, statement)
            resources = _listed(statement.get("Resource", []))
            if "*" in resources:  # only for actions IAM knows no resource type of
                narrower = {a: iam_simulator.resource_types(a) for a in actions}
                assert not any(narrower.values()), (name, statement["Sid"], narrower)
            assert not any(r.endswith(":::*") for r in resources), (name, statement)
    # the bucket policy may deny s3:* on purpose: no request without TLS, whatever it is
    from fruits_tools import s3_staging

    deny = s3_staging.tls_only_statement(BUCKET)
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_instance_policy_writes_only_output_and_logs_and_never_deletes_emr_logs():
    policy = iam.instance_policy(BUCKET, PREFIX)
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    writes = {"s3:PutObject", "s3:DeleteObject"}
    for statement in policy["Statement"]:
        if writes & set(_listed(statement["Action"])):
            for resource in _listed(statement["Resource"]):
                path = resource.split(f"{BUCKET}/", 1)[1]
                assert path.startswith(("fruits/output", "fruits/logs", "fruits_$folder$")), path
    logs = by_sid["AppendClusterLogsNeverDelete"]
    assert "s3:DeleteObject" not in logs["Action"]
    # EMRFS writes folder markers beside the output folder, outside output/*
    markers = _listed(by_sid["EmrfsFolderMarkersAboveOutput"]["Resource"])
    assert f"arn:aws:s3:::{BUCKET}/fruits/output_$folder$" in markers
    assert not [s for s in policy["Statement"] if s["Action"][0].startswith("kms:")]
    assert "kms:Decrypt" in iam.instance_policy(BUCKET, PREFIX, KEY)["Statement"][-1]["Action"]


@pytest.mark.parametrize("which", ["create", "delete"])
def test_iam_requests_match_the_iam_service_model(which):
    requests = (
        iam.create_requests(BUCKET, PREFIX, ACCOUNT, REGION, KEY)
        if which == "create"
        else iam.delete_requests()
    )
    for operation, params in requests:
        assert_valid_request("iam", operation, params)


def test_service_role_is_v2_and_trusts_only_this_account():
    attach = dict(iam.create_requests(BUCKET, PREFIX, ACCOUNT, REGION))["AttachRolePolicy"]
    assert attach["PolicyArn"].endswith("/AmazonEMRServicePolicy_v2")
    trust = iam.documents(BUCKET, PREFIX, ACCOUNT, REGION)["service-trust-policy"]
    condition = trust["Statement"][0]["Condition"]
    assert condition["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    everything = json.dumps(iam.create_requests(BUCKET, PREFIX, ACCOUNT, REGION))
    assert "AmazonElasticMapReduceRole" not in everything  # the deprecated v1 policy


def test_roles_in_a_local_iam_and_the_policy_evaluated_by_moto(moto_endpoint):
    from moto.iam.access_control import IAMPolicy, PermissionResult

    client = boto3.client("iam")
    iam.create_roles(client, BUCKET, PREFIX, ACCOUNT, REGION, KEY, echo=lambda _: None)
    again = iam.create_roles(client, BUCKET, PREFIX, ACCOUNT, REGION, KEY, echo=lambda _: None)
    assert any("skipped: EntityAlreadyExists" in line for line in again)  # a re-run is fine

    profile = client.get_instance_profile(InstanceProfileName=iam.INSTANCE_ROLE)
    assert [r["RoleName"] for r in profile["InstanceProfile"]["Roles"]] == [iam.INSTANCE_ROLE]
    # the nodes' role carries our policy only: no AWS managed policy (the v1 EC2 role's s3:*)
    attached = client.list_attached_role_policies(RoleName=iam.INSTANCE_ROLE)
    assert attached["AttachedPolicies"] == []
    service = client.list_attached_role_policies(RoleName=iam.SERVICE_ROLE)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in service] == [iam.SERVICE_MANAGED_POLICY]

    stored = client.get_role_policy(RoleName=iam.INSTANCE_ROLE, PolicyName=iam.INSTANCE_POLICY_NAME)
    document = stored["PolicyDocument"]
    policy = IAMPolicy(document if isinstance(document, str) else json.dumps(document))

    def allowed(action: str, key: str) -> bool:
        arn = f"arn:aws:s3:::{BUCKET}/{key}"
        return policy.is_action_permitted(action, arn) == PermissionResult.PERMITTED

    assert allowed("s3:GetObject", "fruits/input/Training/Banana/1.jpg")
    assert allowed("s3:GetObject", "fruits/code/wheelhouse/six-1.17.0-py2.py3-none-any.whl")
    assert allowed("s3:PutObject", "fruits/output/_staging/run-1/features/part-0.parquet")
    assert allowed("s3:PutObject", "fruits/logs/emr/j-1/steps/s-1/stderr.gz")
    # outside the allowed prefixes: not among the allowed actions
    assert not allowed("s3:GetObject", "other-project/secret.csv")
    assert not allowed("s3:GetObject", "fruits/inputs-of-someone-else/x.jpg")
    assert not allowed("s3:PutObject", "fruits/input/Training/Banana/1.jpg")
    assert not allowed("s3:PutObject", "fruits/code/bootstrap.sh")
    assert not allowed("s3:DeleteObject", "fruits/logs/emr/j-1/steps/s-1/stderr.gz")
    other_bucket = "arn:aws:s3:::another-bucket/fruits/input/x"
    assert policy.is_action_permitted("s3:GetObject", other_bucket) != PermissionResult.PERMITTED
    assert policy.is_action_permitted("kms:Decrypt", KEY) == PermissionResult.PERMITTED
    other_key = KEY[:-4] + "ffff"
    assert policy.is_action_permitted("kms:Decrypt", other_key) != PermissionResult.PERMITTED

    iam.delete_roles(client, echo=lambda _: None)
    names = {r["RoleName"] for r in client.list_roles()["Roles"]}
    assert not names & {iam.INSTANCE_ROLE, iam.SERVICE_ROLE}
    assert client.list_instance_profiles()["InstanceProfiles"] == []
    gone = iam.delete_roles(client, echo=lambda _: None)  # nothing left: every step skipped
    assert all("skipped: NoSuchEntity" in line for line in gone)


def test_roles_command_dry_run_prints_the_requests():
    done = run_cli(
        "fruits_tools", "emr", "roles", "create", "--bucket", BUCKET, "--dry-run", timeout=120,
        env={**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
             "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    operations = json_objects(done.stdout)
    assert [o["operation"] for o in operations] == [o for o, _ in iam.create_requests(
        BUCKET, PREFIX, ACCOUNT, REGION)]  # fmt: skip
    for operation in operations:
        assert_valid_request("iam", operation["operation"], operation["params"])


def test_roles_command_against_the_local_iam(moto_endpoint):
    from fruits_tools import cli

    assert cli.main(["emr", "roles", "create", "--bucket", BUCKET]) == 0
    client = boto3.client("iam")
    assert client.get_role(RoleName=iam.SERVICE_ROLE)["Role"]["RoleName"] == iam.SERVICE_ROLE
    assert cli.main(["emr", "roles", "delete", "--bucket", BUCKET]) == 0
    assert iam.SERVICE_ROLE not in {r["RoleName"] for r in client.list_roles()["Roles"]}
