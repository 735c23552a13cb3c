"""Every AWS client names its region: a client without one talks to S3's global endpoint,
which nodes in a private subnet (S3 only through a gateway endpoint) cannot reach."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from fruits_tools import emr
from helpers import defaults, storage
from tests.conftest import ROOT

SOURCES = [ROOT / "helpers", ROOT / "tools" / "fruits_tools", ROOT / "emr"]


def _client_calls() -> list[tuple[Path, ast.Call]]:
    """Every ``<x>.client("service", ...)`` / ``<x>.resource(...)`` call in the runtime and the
    tooling."""
    found = []
    for folder in SOURCES:
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("client", "resource")
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    found.append((path, node))
    return found


def test_no_client_is_created_without_a_region():
    calls = _client_calls()
    assert len(calls) >= 6  # s3 (2), iam (2), emr, sts: the scan sees them
    missing = [
        f"{path.relative_to(ROOT)}:{call.lineno}"
        for path, call in calls
        if not any(k.arg == "region_name" for k in call.keywords)
        or any(
            k.arg == "region_name" and isinstance(k.value, ast.Constant) and k.value.value is None
            for k in call.keywords
        )
    ]
    assert not missing, f"AWS clients without region_name: {missing}"


@pytest.fixture
def no_region(monkeypatch, tmp_path):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))  # no profile's region
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)


def test_a_client_nothing_names_a_region_for_uses_the_regional_endpoint(no_region):
    client = storage.s3_client()
    assert client.meta.region_name == defaults.REGION
    assert client.meta.endpoint_url == f"https://s3.{defaults.REGION}.amazonaws.com"


def test_the_cluster_s_region_wins(no_region, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert storage.s3_client().meta.region_name == "eu-central-1"
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    assert storage.s3_client().meta.region_name == "us-west-2"


def test_the_cluster_gives_its_region_to_the_driver_the_executors_and_the_bootstrap():
    spec = emr.ClusterSpec(bucket="b", region="eu-central-1")
    request = emr.run_job_flow_request(spec)
    conf = {c["Classification"]: c for c in request["Configurations"]}
    defaults_ = conf["spark-defaults"]["Properties"]
    for side in ("spark.yarn.appMasterEnv", "spark.executorEnv"):
        assert defaults_[f"{side}.AWS_REGION"] == "eu-central-1"
        assert defaults_[f"{side}.AWS_DEFAULT_REGION"] == "eu-central-1"
    exported = conf["spark-env"]["Configurations"][0]["Properties"]
    assert exported["AWS_REGION"] == exported["AWS_DEFAULT_REGION"] == "eu-central-1"
    args = request["BootstrapActions"][0]["ScriptBootstrapAction"]["Args"]
    assert args[args.index("--region") + 1] == "eu-central-1"
    # every `aws s3 cp` in the bootstrap passes it
    text = (ROOT / "emr" / "bootstrap.sh").read_text()
    copies = [line for line in text.splitlines() if "aws s3 cp" in line and "run " in line]
    assert copies and all('--region "$REGION"' in line for line in copies), copies
    assert json.dumps(request)  # serialisable as sent


def test_every_step_names_the_region_to_the_aws_cli_and_the_notebooks():
    """A step runs in a plain shell (no spark-env): its ``aws s3 cp`` and the notebooks'
    S3 clients (papermill's, the kernels') get the region from the step itself."""
    spec = emr.ClusterSpec(bucket="b", region="eu-central-1")
    jars = [spec.uri("code", "jars", "spark-measure_2.12-0.24.jar")]
    steps = [
        *emr.pipeline_steps(spec, jars=jars),
        *emr.pipeline_steps(spec, mode="notebooks", jars=jars),
    ]
    scripts = [" ".join(s["HadoopJarStep"]["Args"]) for s in steps]
    copies = [part for script in scripts for part in script.split(" && ") if "aws s3" in part]
    assert len(copies) == 2, copies
    assert all("--region eu-central-1" in c for c in copies), copies
    notebooks = scripts[-1]
    assert "AWS_REGION=eu-central-1" in notebooks
