"""The chaos test of tests/test_chaos_local.py on S3 through S3A: input and output on the local S3
server behind the gate (every request as AWS would answer the nodes' role), the driver's commits
and clean-up through boto3, unfinished multipart uploads counted as orphaned bytes."""

from __future__ import annotations

import os

import pytest

from fruits_tools import iam, s3_staging
from tests import chaos, chaos_checks, emr_box
from tests.iamsim import OWNER, Principal

pytestmark = [pytest.mark.s3a, pytest.mark.spark, pytest.mark.slow]

KILLS = int(os.environ.get("FRUITS_CHAOS_KILLS", "6"))
SEED = int(os.environ.get("FRUITS_CHAOS_SEED", "29"))
BUCKET, REGION = "fruits-chaos", "eu-west-3"
NODE_ROLE = Principal.role(iam.INSTANCE_ROLE, **{"fruits-s3": iam.instance_policy(BUCKET)})


@pytest.fixture(scope="module")
def s3a_env(s3_gate, tmp_path_factory):
    conf = tmp_path_factory.mktemp("chaos-conf")
    settings = emr_box.s3a_local_settings(s3_gate.url, REGION)
    (conf / "spark-defaults.conf").write_text("".join(f"{k} {v}\n" for k, v in settings.items()))
    nodes = s3_gate.admit("CHAOSNODEKEY", NODE_ROLE)
    s3_gate.admit("CHAOSOWNERKEY", OWNER)
    owner = s3_gate.client("CHAOSOWNERKEY", REGION)
    s3_staging.ensure_bucket(BUCKET, REGION, client=owner, expected_owner="123456789012")
    source = chaos_checks.make_input(tmp_path_factory.mktemp("chaos-input"))
    s3_staging.upload_folder(source, f"s3://{BUCKET}/fruits/input/sample", client=owner)
    env = chaos.env_for({"SPARK_CONF_DIR": str(conf), "SPARK_LOCAL_IP": "127.0.0.1",
                         "AWS_REGION": REGION, **nodes})  # fmt: skip
    return {"env": env, "owner": owner, "nodes": nodes}


def test_killed_runs_on_s3_leave_a_coherent_or_refused_output_and_no_orphans(
    s3a_env, mobilenet_weights, monkeypatch
):
    # this process reads the record and judges it as the nodes' role does
    for name, value in s3a_env["nodes"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", REGION)
    import boto3

    boto3.setup_default_session()  # not credentials an earlier test's session resolved
    backend = chaos_checks.S3Backend(s3a_env["owner"], BUCKET, "fruits/output/chaos")
    outcomes = chaos_checks.run_chaos(
        backend, s3a_env["env"], KILLS, SEED,
        (f"s3a://{BUCKET}/fruits/input/sample", "--weights", mobilenet_weights),
    )  # fmt: skip
    chaos_checks.write_outcomes("s3a", outcomes)
