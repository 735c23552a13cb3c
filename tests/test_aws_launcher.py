"""The launcher tells the truth, against a local EMR endpoint (moto's server over HTTP).

moto runs no step, so a background thread plays EMR's part on the server's own state: it ends
the steps (COMPLETED, or FAILED with FailureDetails, the rest CANCELLED), ends the cluster, and
writes the logs EMR copies under the LogUri (the step's stderr naming its YARN application, the
application master's container stderr). Everything the launcher does goes through boto3 and
HTTP, as against AWS.
"""

from __future__ import annotations

import gzip
import json
import threading
import time

import boto3
import botocore.exceptions
import pytest

from fruits_tools import cli, emr, iam, s3_staging
from tests.awsmodels import assert_valid_request
from tests.test_aws_iam import start_moto

BUCKET = "fruits-launch"
ARGS = ["--bucket", BUCKET, "--poll", "0.2", "--timeout", "60"]
APP = "application_1764140000000_0001"
KEY = "arn:aws:kms:eu-west-3:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def local_aws(monkeypatch, operator_calls):
    """The local server in this process (its EMR state reachable by the test), a bucket with
    the code staged, the security configuration made."""
    server = start_moto(monkeypatch, managed_policies=False)
    s3_staging.ensure_bucket(BUCKET, "eu-west-3")
    boto3.client("s3").put_object(Bucket=BUCKET, Key="fruits/code/bootstrap.sh", Body=b"#!")
    _tagged_network()
    emr.Launcher(emr.ClusterSpec(bucket=BUCKET)).create_security_configuration(KEY)
    yield
    server.stop()


@pytest.fixture
def local_aws_with_iam(monkeypatch, operator_calls):
    """The same, with AWS's managed policies in IAM (the service role attaches one)."""
    server = start_moto(monkeypatch, managed_policies=True)
    s3_staging.ensure_bucket(BUCKET, "eu-west-3")
    yield
    server.stop()


def stage_command(folder) -> list[str]:
    """``emr stage`` with small stand-ins for the wheel, the weights and the wheelhouse (its
    hash locks included), written into ``folder``."""
    wheel = folder / "fruits_helpers-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    weights = folder / "w.h5"
    weights.write_bytes(b"w")
    house = folder / "house"
    house.mkdir()
    for name in ("requirements.lock", "requirements-primary.lock"):
        (house / name).write_text("six==1.17.0 --hash=sha256:" + "0" * 64 + "\n")
    return ["emr", "stage", "--bucket", BUCKET, "--wheel", str(wheel), "--weights", str(weights),
            "--wheelhouse", str(house)]  # fmt: skip


def _tagged_network() -> str:
    """A subnet and its VPC tagged for AmazonEMRServicePolicy_v2 (``emr network prepare``)."""
    ec2 = boto3.client("ec2", region_name="eu-west-3")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    ec2.create_tags(Resources=[vpc, subnet], Tags=[iam.MANAGED_POLICY_TAG])
    return subnet


def _cluster(cluster_id: str):
    """moto's cluster object, whatever region its backend filed it under."""
    from moto.emr.models import emr_backends

    for regions in emr_backends.values():
        for backend in regions.values():
            if cluster_id in backend.clusters:
                return backend.clusters[cluster_id]
    return None


@pytest.fixture
def failure_details(monkeypatch):
    """moto keeps no FailureDetails: its step status gets them from the step, as EMR's has."""
    from moto.emr.models import Step

    plain = Step.status.fget

    def status(step):
        details = getattr(step, "failure_details", None)
        return {**plain(step), **({"FailureDetails": details} if details else {})}

    monkeypatch.setattr(Step, "status", property(status))


def _put_gz(key: str, text: str) -> None:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(text.encode()))


def play_emr(outcome: str, delay_s: float = 0.6) -> threading.Thread:
    """Once a cluster with steps exists, end its steps and the cluster as EMR would."""

    def run():
        from moto.emr.models import emr_backends

        deadline = time.monotonic() + 30
        cluster = None
        while cluster is None and time.monotonic() < deadline:
            time.sleep(0.1)
            found = [c for r in emr_backends.values() for b in r.values()
                     for c in b.clusters.values() if c.steps]  # fmt: skip
            cluster = found[0] if found else None
        time.sleep(delay_s)  # the launcher is waiting by now
        first, *rest = cluster.steps
        logs = f"fruits/logs/emr/{cluster.id}"
        if outcome == "step-failed":
            _put_gz(
                f"{logs}/steps/{first.id}/stderr.gz",
                f"INFO Client: Submitted application {APP}\nException in thread main\n",
            )
            _put_gz(f"{logs}/containers/{APP}/container_1764140000000_0001_01_000001/stderr.gz",
                    "INFO featurize: 132 images\nTraceback (most recent call last):\n"
                    "ValueError: no image under s3://fruits-launch/fruits/input\n")  # fmt: skip
            first.failure_details = {
                "Reason": "Unknown Error.",
                "Message": "Exception in thread main: org.apache.spark.SparkException: "
                "Application application_1764140000000_0001 finished with failed status",
                "LogFile": f"s3://{BUCKET}/{logs}/steps/{first.id}/stderr.gz",
            }
            first.state = "FAILED"
            for step in rest:
                step.state = "CANCELLED"
            cluster.state = "TERMINATED"
        elif outcome == "bootstrap-failed":
            for step in cluster.steps:
                step.state = "CANCELLED"
            cluster.state = "TERMINATED_WITH_ERRORS"
            cluster.last_state_change_reason = "bootstrap action 1 returned a non-zero return code"
        else:
            for step in cluster.steps:
                step.state = "COMPLETED"
            cluster.state = "TERMINATED"

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_failed_step_exits_non_zero_with_its_reason_and_the_driver_log(
    local_aws, failure_details, capsys
):
    play_emr("step-failed")
    code = cli.main(["emr", "run", *ARGS])
    out, err = capsys.readouterr()
    assert code == 1
    summary = json.loads(out[out.index("{", out.index("}") + 1) :])
    assert list(summary["steps"].values()) == ["FAILED", "CANCELLED"] and not summary["ok"]
    assert "cost: 3 instances x 1 h in eu-west-3" in err  # printed before the launch
    assert ": FAILED" in err and "Reason: Unknown Error." in err
    assert "finished with failed status" in err
    # the driver's own error, from the application master's container log under the LogUri
    assert f"containers/{APP}/container_1764140000000_0001_01_000001/stderr.gz" in err
    assert "ValueError: no image under s3://fruits-launch/fruits/input" in err
    assert "Traceback" not in err.split("driver log")[0]  # no stack trace of ours


def test_a_cluster_ending_with_errors_exits_non_zero(local_aws, capsys):
    play_emr("bootstrap-failed")
    code = cli.main(["emr", "run", *ARGS])
    err = capsys.readouterr().err
    assert code == 1
    assert "TERMINATED_WITH_ERRORS" in err and "CANCELLED" in err


def test_a_successful_one_shot_run_exits_zero_after_its_steps_and_the_cluster_end(
    local_aws, capsys
):
    player = play_emr("completed", delay_s=1.0)
    started = time.monotonic()
    assert cli.main(["emr", "run", *ARGS]) == 0
    assert time.monotonic() - started >= 1.0  # it waited for the steps
    player.join()
    out = capsys.readouterr().out
    assert '"ok": true' in out
    cluster_id = json.loads(out.splitlines()[0])["cluster_id"]
    request = boto3.client("emr").describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert request["AutoTerminate"] is True  # KeepJobFlowAliveWhenNoSteps=False
    tags = {t["Key"]: t["Value"] for t in request["Tags"]}
    assert tags["for-use-with-amazon-emr-managed-policies"] == "true"


def test_wait_without_step_ids_waits_for_the_cluster_s_steps(local_aws):
    launcher = emr.Launcher(emr.ClusterSpec(bucket=BUCKET, security_configuration=None))
    cluster_id = launcher.create()
    with pytest.raises(ValueError, match="has no steps: nothing to wait for"):
        launcher.wait(cluster_id, None, poll_s=0.2)
    launcher.submit(cluster_id, emr.pipeline_steps(launcher.spec))
    play_emr("completed", delay_s=1.0)
    started = time.monotonic()
    outcome = launcher.wait(cluster_id, None, poll_s=0.2, timeout_s=60)
    assert time.monotonic() - started >= 1.0
    assert outcome.ok and len(outcome.steps) == 2
    assert [s["Name"] for s in outcome.steps] == ["fruits: featurize + PCA", "fruits: recognition"]


def test_wait_command_exits_non_zero_on_a_failed_step(local_aws, failure_details, capsys):
    launcher = emr.Launcher(emr.ClusterSpec(bucket=BUCKET, security_configuration=None))
    cluster_id = launcher.create()
    launcher.submit(cluster_id, emr.pipeline_steps(launcher.spec))
    play_emr("step-failed")
    assert cli.main(["emr", "wait", "--cluster-id", cluster_id, *ARGS]) == 1
    assert "Reason: Unknown Error." in capsys.readouterr().err


def test_a_launch_that_could_only_fail_is_refused_before_it_costs(
    local_aws, capsys, operator_calls
):
    operator_calls.prefixes = ("fruits", "other")
    boto3.client("emr").delete_security_configuration(Name=emr.SECURITY_CONFIGURATION)
    assert cli.main(["emr", "run", *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no security configuration fruits-security: run emr")
    assert cli.main(["emr", "run", *ARGS, "--no-security-configuration", "--prefix", "other"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: nothing staged under s3://{BUCKET}/other/code/: run emr stage first"
    assert boto3.client("emr").list_clusters()["Clusters"] == []


def test_user_errors_are_one_line(local_aws, capsys):
    assert cli.main(["emr", "wait", "--bucket", BUCKET]) == 2
    assert capsys.readouterr().err.strip() == "error: emr wait needs --cluster-id"
    launcher = emr.Launcher(emr.ClusterSpec(bucket=BUCKET, security_configuration=None))
    cluster_id = launcher.create()
    assert cli.main(["emr", "wait", "--cluster-id", cluster_id, *ARGS]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: cluster {cluster_id} has no steps: nothing to wait for"
    assert cli.main(["emr", "status", "--cluster-id", "j-NOSUCHCLUSTER", *ARGS]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err


def test_cost_line_from_the_dated_price_table():
    spec = emr.ClusterSpec(bucket=BUCKET)
    cost = emr.estimate_cost(spec, hours=2)
    # 3 x m5.xlarge in eu-west-3: (0.224 EC2 + 0.048 EMR) $/h, plus 3 x (64 + 20) GB of EBS
    assert cost["ec2"] == pytest.approx(3 * 0.224 * 2)
    assert cost["emr"] == pytest.approx(3 * 0.048 * 2)
    assert cost["ebs"] == pytest.approx(3 * 84 * 0.0928 * 2 / 730)
    assert cost["line"].startswith("cost: 3 instances x 2 h in eu-west-3 = 1.70 USD")
    assert cost["as_of"] in cost["line"]
    with pytest.raises(ValueError, match="no prices for region ap-south-2"):
        emr.estimate_cost(emr.ClusterSpec(bucket=BUCKET, region="ap-south-2"), 1)


def test_security_configuration_in_the_local_emr(local_aws):
    document = emr.security_configuration(KEY, "s3://fruits-launch/certs/pem.zip")
    encryption = document["EncryptionConfiguration"]
    at_rest = encryption["AtRestEncryptionConfiguration"]
    assert at_rest["S3EncryptionConfiguration"] == {"EncryptionMode": "SSE-KMS", "AwsKmsKey": KEY}
    assert at_rest["LocalDiskEncryptionConfiguration"]["EnableEbsEncryption"] is True
    assert encryption["EnableInTransitEncryption"] is True
    assert not emr.security_configuration(KEY)["EncryptionConfiguration"][
        "EnableInTransitEncryption"
    ]
    with pytest.raises(ValueError, match="--kms-key"):
        emr.security_configuration(None)
    launcher = emr.Launcher(emr.ClusterSpec(bucket=BUCKET))
    assert launcher.create_security_configuration(KEY) == emr.SECURITY_CONFIGURATION
    launcher.create_security_configuration(KEY)  # again: replaced, not an error
    stored = boto3.client("emr").describe_security_configuration(Name=emr.SECURITY_CONFIGURATION)
    assert json.loads(stored["SecurityConfiguration"]) == emr.security_configuration(KEY)
    params = {"Name": "x", "SecurityConfiguration": json.dumps(document)}
    assert_valid_request("emr", "CreateSecurityConfiguration", params)


def test_notebook_execution_request_matches_the_emr_service_model(capsys):
    spec = emr.ClusterSpec(bucket=BUCKET)
    request = emr.notebook_execution_request(
        spec, "j-1", "03_pca", {"K": 50, "INPUT_URI": "s3://b/in"}, "EMR_Notebooks_DefaultRole"
    )
    assert_valid_request("emr", "StartNotebookExecution", request)
    assert request["NotebookS3Location"]["Key"] == "fruits/code/notebooks-studio/03_pca.ipynb"
    assert json.loads(request["NotebookParams"]) == {"K": 50, "INPUT_URI": "s3://b/in"}
    assert cli.main(["emr", "notebooks-execution", "--bucket", BUCKET, "--dry-run",
                     "--notebook", "03_pca", "--params", '{"K": 50}',
                     "--studio-role", "EMR_Notebooks_DefaultRole"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["operation"] == "StartNotebookExecution"
    assert_valid_request("emr", "StartNotebookExecution", printed["params"])
    not_an_object = ["emr", "notebooks-execution", "--bucket", BUCKET, "--dry-run",
                     "--notebook", "03_pca", "--params", "[1]", "--studio-role", "r"]  # fmt: skip
    assert cli.main(not_an_object) == 2
    assert capsys.readouterr().err.startswith("error: --params must be a JSON object")


def test_teardown_removes_what_stage_and_roles_made(
    local_aws_with_iam, tmp_path, capsys, monkeypatch
):
    assert cli.main(stage_command(tmp_path)) == 0
    house = tmp_path / "house"
    assert cli.main(["emr", "roles", "create", "--bucket", BUCKET]) == 0
    assert cli.main(["emr", "security-config", "create", "--bucket", BUCKET, "--kms-key", KEY]) == 0
    s3_staging.upload_folder(house, f"s3://{BUCKET}/fruits/input")  # the user's data
    capsys.readouterr()

    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli.main(["emr", "teardown", "--bucket", BUCKET]) == 2  # no --yes, nobody to ask
    assert "pass --yes" in capsys.readouterr().err
    assert cli.main(["emr", "teardown", "--bucket", BUCKET, "--dry-run"]) == 0
    assert s3_staging.list_prefix(f"s3://{BUCKET}/fruits/code")  # a dry run deletes nothing

    assert cli.main(["emr", "teardown", "--bucket", BUCKET, "--yes"]) == 0
    assert s3_staging.list_prefix(f"s3://{BUCKET}/fruits/code") == []
    assert s3_staging.list_prefix(f"s3://{BUCKET}/fruits/input")  # kept
    roles = {r["RoleName"] for r in boto3.client("iam").list_roles()["Roles"]}
    assert not roles & {iam.INSTANCE_ROLE, iam.SERVICE_ROLE}
    with pytest.raises(botocore.exceptions.ClientError):
        boto3.client("emr").describe_security_configuration(Name=emr.SECURITY_CONFIGURATION)
