"""EMR Serverless (``fruits_tools.serverless``): the requests against botocore's
``emr-serverless`` model and sent to moto's server (application, job runs), the wait on every
final state, the driver's log fetched from the run's S3 log location on failure (real S3
protocol, the local S3 server), the cost lines from the dated price table, and the command
line. What runs inside a job run (the archive's Spark settings) is rehearsed on YARN by
tests/test_emr_rehearsal.py."""

from __future__ import annotations

import gzip
import json
import shlex

import boto3
import pytest

from fruits_tools import pack, serverless
from tests.awsmodels import assert_valid_request
from tests.clirun import run_cli

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/fruits-serverless-job"
IMAGE = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/fruits-serverless:emr-7.13.0"
SPEC = serverless.ServerlessSpec(bucket="fruits-bucket", role_arn=ROLE, region="us-east-1",
                                 image_uri=IMAGE)  # fmt: skip


def test_requests_match_the_emr_serverless_service_model():
    assert_valid_request(
        "emr-serverless", "CreateApplication", serverless.application_request(SPEC)
    )
    for request in serverless.chain_requests(SPEC, "00f00application", run_args=["--k", "20"]):
        assert_valid_request("emr-serverless", "StartJobRun", request)


def test_job_runs_carry_the_archive_and_its_interpreter_for_driver_and_executors():
    run, recognize = serverless.chain_requests(
        SPEC, "app", recognize_args=["--augment-copies", "1"]
    )
    assert run["jobDriver"]["sparkSubmit"]["entryPointArguments"] == [
        "run", "--input", SPEC.uri("input"), "--output", SPEC.uri("output")]  # fmt: skip
    assert recognize["jobDriver"]["sparkSubmit"]["entryPointArguments"][:3] == [
        "recognize", "--output", SPEC.uri("output")]  # fmt: skip
    words = shlex.split(run["jobDriver"]["sparkSubmit"]["sparkSubmitParameters"])
    conf = dict(w.split("=", 1) for w in words if w != "--conf")
    assert conf["spark.archives"] == f"{SPEC.uri('code', pack.ARCHIVE_NAME)}#environment"
    for key in ("spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
                "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
                "spark.executorEnv.PYSPARK_PYTHON"):  # fmt: skip
        assert conf[key] == "./environment/bin/python"
    # the weights from the bucket, for the driver and the executors; YARN's names are not used
    assert conf["spark.emr-serverless.driverEnv.FRUITS_MODELS_URI"] == SPEC.uri("code", "models")
    assert conf["spark.executorEnv.FRUITS_MODELS_URI"] == SPEC.uri("code", "models")
    assert not [k for k in conf if k.startswith("spark.yarn.")]
    logs = run["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"]
    assert logs["logUri"] == SPEC.uri("logs", "serverless") + "/"


def test_bad_arguments_and_applications_are_refused_in_one_line():
    with pytest.raises(ValueError, match="--output is set by the launcher"):
        serverless.chain_requests(SPEC, "app", run_args=["--output", "s3://x/y"])
    with pytest.raises(ValueError, match="emr-7.x"):
        serverless.application_request(serverless.ServerlessSpec("b", ROLE, release="emr-6.15.0"))
    with pytest.raises(ValueError, match="Python 3.9 .* --image-uri"):
        serverless.application_request(serverless.ServerlessSpec("b", ROLE))
    app = {"applicationId": "a1", "type": "Spark", "releaseLabel": "emr-6.9.0",
           "architecture": "ARM64", "state": "STARTED"}  # fmt: skip
    with pytest.raises(ValueError) as refused:
        serverless.check_application(app)
    assert "emr-7.x" in str(refused.value) and "X86_64" in str(refused.value)
    assert "Python 3.9" in str(refused.value) and "\n" not in str(refused.value)
    good = {**app, "releaseLabel": "emr-7.13.0", "architecture": "X86_64",
            "imageConfiguration": {"imageUri": IMAGE}}  # fmt: skip
    serverless.check_application(good)


@pytest.fixture
def moto(aws_local, monkeypatch, iam_simulator):
    """moto's server (the local S3 server's process serves emr-serverless too), us-east-1; every
    call the tooling makes is decided at the end against emr/iam/serverless-operator-policy.json
    (what a person running ``serverless`` is given: no IAM, no EC2, no cluster)."""
    from fruits_tools import iam
    from tests.iamsim import ACCOUNT as SIM_ACCOUNT
    from tests.iamsim import Principal
    from tests.operator import Calls

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    boto3.setup_default_session()
    calls = Calls(region="us-east-1").install(boto3.DEFAULT_SESSION)
    yield aws_local
    policy = iam.serverless_operator_policy(SPEC.bucket, SPEC.prefix, SIM_ACCOUNT, "us-east-1")
    principal = Principal.role("fruits-serverless-operator", policy=policy)
    assert calls.calls, "no call of the tooling was recorded"
    refused = calls.refused(principal, iam_simulator)
    assert not refused, f"the serverless operator's policy refuses: {refused}"


def test_application_and_job_runs_on_moto(moto):
    client = boto3.client("emr-serverless", region_name="us-east-1")
    service = serverless.Serverless(SPEC, client=client, echo=lambda line: None)
    app_id = service.application(None, poll_s=0.01)
    app = client.get_application(applicationId=app_id)["application"]
    assert app["releaseLabel"] == serverless.DEFAULT_RELEASE and app["type"].upper() == "SPARK"
    assert app["maximumCapacity"]["cpu"] == "32 vCPU"
    # (moto keeps neither the architecture nor the image of CreateApplication: naming an
    # application is checked on GetApplication's shape, in the test above)
    runs = []
    for request in serverless.chain_requests(SPEC, app_id):
        run_id = service.start(request)
        runs.append(service.wait(app_id, run_id, poll_s=0.01, timeout_s=30))
    assert [r["state"] for r in runs] == ["SUCCESS", "SUCCESS"]
    stored = client.get_job_run(applicationId=app_id, jobRunId=runs[0]["jobRunId"])["jobRun"]
    assert stored["jobDriver"]["sparkSubmit"]["entryPoint"] == SPEC.uri("code", "run_pipeline.py")
    assert stored["executionRole"] == ROLE


class _States:
    """GetJobRun answering a given sequence of states (the service's own; moto's runs end at
    once), then repeating the last."""

    def __init__(self, *states: str):
        self.states, self.calls = list(states), 0

    def get_job_run(self, applicationId: str, jobRunId: str) -> dict:  # noqa: N803
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        return {"jobRun": {"jobRunId": jobRunId, "applicationId": applicationId,
                           "state": state, "name": "fruits: featurize + PCA"}}  # fmt: skip


@pytest.mark.parametrize("final", serverless.JOB_RUN_FINAL)
def test_the_wait_ends_on_every_final_state(final):
    states = _States("SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "QUEUED", "CANCELLING", final)
    service = serverless.Serverless(SPEC, client=states)
    run = service.wait("app", "run1", poll_s=0, sleep=lambda s: None)
    assert run["state"] == final and states.calls == 7


def test_the_wait_gives_up_in_one_line_on_a_state_it_does_not_know():
    service = serverless.Serverless(SPEC, client=_States("RUNNING", "SOMETHING_NEW"))
    with pytest.raises(TimeoutError, match="still SOMETHING_NEW .* cancel-job-run"):
        service.wait("app", "run1", poll_s=0, timeout_s=0.05, sleep=lambda s: None)


def test_a_failed_run_reports_the_tail_of_the_drivers_log_from_s3(moto):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=SPEC.bucket)
    base = SPEC.key("logs", "serverless", "applications", "app", "jobs", "run1")
    # a retried run: the last attempt's driver log is the one that says why
    for attempt, text in ((1, "first attempt\nOOM"), (2, "loading\nValueError: no images")):
        s3.put_object(Bucket=SPEC.bucket, Key=f"{base}/attempts/{attempt}/SPARK_DRIVER/stderr.gz",
                      Body=gzip.compress(text.encode()))  # fmt: skip
    service = serverless.Serverless(SPEC, client=_States("FAILED"), s3=s3)
    run = service.wait("app", "run1", poll_s=0, sleep=lambda s: None)
    lines = service.report("app", run)
    assert lines[0].endswith(": FAILED")
    assert any("attempts/2/SPARK_DRIVER/stderr.gz" in line for line in lines)
    assert lines[-1].strip() == "ValueError: no images"
    # no log yet: said so, no stack trace
    quiet = serverless.Serverless(SPEC, client=_States("FAILED"), s3=s3)
    assert "no driver log" in quiet.report("app", {"jobRunId": "run2", "state": "FAILED"})[-1]


def test_cost_lines_from_the_dated_price_table():
    rates = serverless.prices("us-east-1")
    runs = [{"billedResourceUtilization": {"vCPUHour": 2.0, "memoryGBHour": 8.0,
                                           "storageGBHour": 10.0}},
            {"billedResourceUtilization": {"vCPUHour": 1.0, "memoryGBHour": 4.0,
                                           "storageGBHour": 0.0}}]  # fmt: skip
    found = serverless.job_cost(runs, "us-east-1")
    expected = 3 * rates["vcpu_hour"] + 12 * rates["gb_hour"] + 10 * rates["storage_gb_hour"]
    assert found["total"] == pytest.approx(expected)
    assert rates["as_of"] in found["line"] and "emr/prices.json" in found["line"]
    with pytest.raises(ValueError, match="no EMR Serverless prices for eu-west-3"):
        serverless.job_cost(runs, "eu-west-3")
    # a run of 90,000 images in the default mode: a minute's minimum, then linear in images
    small = serverless.estimate(10, 32.3, 45.0, "us-east-1")
    big = serverless.estimate(1_000_000, 32.3, 45.0, "us-east-1")
    assert small["wall_s"] < 60 and big["total"] > 10 * small["total"]


def test_serverless_command_line_dry_run_prints_valid_requests():
    done = run_cli(
        "fruits_tools", "serverless", "run", "--bucket", SPEC.bucket, "--region", "us-east-1",
        "--role-arn", ROLE, "--image-uri", IMAGE, "--dry-run",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = [json.loads(chunk) for chunk in _objects(done.stdout)]
    operations = [p["operation"] for p in printed]
    assert operations == ["CreateApplication", "StartJobRun", "StartJobRun"]
    for p in printed:
        assert_valid_request("emr-serverless", p["operation"], p["params"])
    refused = run_cli("fruits_tools", "serverless", "run", "--bucket", "b", "--dry-run")
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert "--role-arn" in refused.stderr
    cost = run_cli("fruits_tools", "serverless", "cost", "--bucket", "b", "--region",
                   "us-east-1", "--images", "1000000")  # fmt: skip
    assert cost.returncode == 0 and "EMR Serverless prices of" in cost.stderr + cost.stdout


def _objects(text: str) -> list[str]:
    decoder, found, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) != -1:
        obj, end = decoder.raw_decode(text, at)
        found.append(text[at:end])
        at = end
    return found
