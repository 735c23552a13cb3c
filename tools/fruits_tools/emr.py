"""Run the pipeline on AWS EMR from code: stage, create the cluster, submit, wait, terminate.

Every API request is built by a pure function (so ``--dry-run`` prints exactly what would be
sent, and tests validate it against botocore's EMR service model). Credentials come from the
standard AWS chain; the cluster's nodes use the instance profile (see ``emr/iam/``).

S3 layout under ``s3://<bucket>/<prefix>/``: ``input/`` (images), ``code/`` (bootstrap, wheel,
entry point, notebooks), ``output/`` (results), ``logs/`` (EMR logs, Spark event logs).
"""

from __future__ import annotations

import json
import logging
import string
import time
from dataclasses import dataclass
from pathlib import Path

from fruits_tools import assets
from helpers import defaults, storage

log = logging.getLogger(__name__)

#: EMR 7.13: Spark 3.5.6 on Amazon Linux 2023; the bootstrap adds Python 3.11 (see README).
DEFAULT_RELEASE = "emr-7.13.0"
VENV_PYTHON = "/opt/fruits-venv/bin/python"
#: Where Spark on EMR logs its events by default (the persistent Spark UI is fed from there).
EMR_EVENT_LOG_DIR = "hdfs:///var/log/spark/apps"


@dataclass
class ClusterSpec:
    """What cluster to create and where its files live."""

    bucket: str
    prefix: str = "fruits"
    region: str = defaults.REGION
    name: str = "fruits-pipeline"
    release: str = DEFAULT_RELEASE
    primary_type: str = "m5.xlarge"
    core_type: str = "m5.xlarge"
    core_count: int = 2
    task_type: str = "m5.xlarge"
    task_count: int = 0
    task_spot: bool = True
    idle_timeout_s: int = 3600
    service_role: str = "EMR_DefaultRole"
    instance_profile: str = "EMR_EC2_DefaultRole"
    subnet_id: str | None = None
    wheel_name: str = "fruits_helpers-0.1.0-py3-none-any.whl"

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", self.prefix.strip("/"), *parts])


def render_configurations(spec: ClusterSpec, path: Path | None = None) -> list:
    """``emr/configurations.json`` with its ``${...}`` placeholders filled in.

    Spark's event logs stay where EMR puts them (``hdfs:///var/log/spark/apps``, which exists
    before any application starts): EMR's persistent Spark UI and its History Server read them
    from there, and an S3 prefix that nothing has created yet would stop every application.
    """
    path = path or assets.emr_file("configurations.json")
    text = string.Template(path.read_text()).substitute(BUCKET=spec.bucket, PREFIX=spec.prefix)
    return json.loads(text)


def render_policy(spec: ClusterSpec, path: Path | None = None) -> dict:
    """The instance profile's least-privilege S3 policy for this bucket and prefix."""
    path = path or assets.emr_file("iam/instance-profile-policy.json")
    text = string.Template(path.read_text()).substitute(
        BUCKET=spec.bucket, PREFIX=spec.prefix.strip("/")
    )
    return json.loads(text)


def run_job_flow_request(spec: ClusterSpec) -> dict:
    """Parameters of ``RunJobFlow`` for the cluster."""
    groups = [
        {"Name": "primary", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
         "InstanceType": spec.primary_type, "InstanceCount": 1},
        {"Name": "core", "InstanceRole": "CORE", "Market": "ON_DEMAND",
         "InstanceType": spec.core_type, "InstanceCount": spec.core_count},
    ]  # fmt: skip
    if spec.task_count:
        groups.append(
            {"Name": "task", "InstanceRole": "TASK",
             "Market": "SPOT" if spec.task_spot else "ON_DEMAND",
             "InstanceType": spec.task_type, "InstanceCount": spec.task_count}
        )  # fmt: skip
    instances: dict = {"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": True}
    if spec.subnet_id:
        instances["Ec2SubnetId"] = spec.subnet_id
    return {
        "Name": spec.name,
        "ReleaseLabel": spec.release,
        "LogUri": spec.uri("logs", "emr") + "/",
        "Applications": [
            {"Name": n} for n in ("Hadoop", "Spark", "Livy", "JupyterEnterpriseGateway")
        ],
        "Instances": instances,
        "BootstrapActions": [
            {
                "Name": "fruits-python-environment",
                "ScriptBootstrapAction": {
                    "Path": spec.uri("code", "bootstrap.sh"),
                    "Args": ["--wheel", spec.uri("code", spec.wheel_name)],
                },
            }
        ],
        "Configurations": render_configurations(spec),
        "ServiceRole": spec.service_role,
        "JobFlowRole": spec.instance_profile,
        "AutoTerminationPolicy": {"IdleTimeout": spec.idle_timeout_s},
        "VisibleToAllUsers": True,
        "Tags": [{"Key": "project", "Value": "fruits"}],
    }


def pipeline_steps(
    spec: ClusterSpec,
    input_uri: str | None = None,
    output_uri: str | None = None,
    mode: str = "cli",
    extra_args: list[str] | None = None,
) -> list[dict]:
    """Steps running the chain: ``cli`` (spark-submit of the helpers CLI: ``run``, then
    ``recognize``) or ``notebooks`` (papermill on the primary node; executed notebooks written
    to ``<output>/notebooks/``)."""
    input_uri = input_uri or spec.uri("input")
    output_uri = output_uri or spec.uri("output")
    extra = list(extra_args or [])
    if mode == "cli":
        args = ["spark-submit", "--deploy-mode", "cluster",
                spec.uri("code", "run_pipeline.py"), "run",
                "--input", input_uri, "--output", output_uri, *extra]  # fmt: skip
        name = "fruits: featurize + PCA"
        entry = spec.uri("code", "run_pipeline.py")
        recognize = ["spark-submit", "--deploy-mode", "cluster", entry,
                     "recognize", "--output", output_uri]  # fmt: skip
    elif mode == "notebooks":
        books = "/tmp/fruits-notebooks"
        # EMR's own pyspark (on the environment's path via the bootstrap) needs SPARK_HOME.
        # PYSPARK_PYTHON: the kernels start Spark from a plain Python process, where
        # spark.pyspark.python is not applied, so executors would run the system python3.
        script = (
            f"export SPARK_HOME=/usr/lib/spark PYSPARK_PYTHON={VENV_PYTHON} && "
            f"aws s3 cp --recursive --only-show-errors {spec.uri('code', 'notebooks')} {books} && "
            f"{VENV_PYTHON} -m helpers notebooks --notebook-dir {books} --kernel fruits "
            f"-p SPARK_MASTER yarn -p INPUT_URI {input_uri} --output {output_uri} "
            + " ".join(extra)
        ).strip()
        args = ["bash", "-c", script]
        name = "fruits: notebooks 01-05"
    else:
        raise ValueError(f"mode must be 'cli' or 'notebooks', got {mode!r}")
    steps = [(name, args)]
    if mode == "cli":
        steps.append(("fruits: recognition", recognize))
    return [
        {
            "Name": step_name,
            # a failed step cancels the ones after it: they would read stale outputs
            "ActionOnFailure": "CONTINUE" if i == len(steps) - 1 else "CANCEL_AND_WAIT",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": step_args},
        }
        for i, (step_name, step_args) in enumerate(steps)
    ]


def staging_files(spec: ClusterSpec, wheel: Path) -> dict[str, Path]:
    """Local files to upload to ``code/`` before creating the cluster (S3 URI -> path)."""
    files = {
        spec.uri("code", "bootstrap.sh"): assets.emr_file("bootstrap.sh"),
        spec.uri("code", "run_pipeline.py"): assets.emr_file("run_pipeline.py"),
        spec.uri("code", spec.wheel_name): wheel,
    }
    for notebook in assets.notebooks():
        files[spec.uri("code", "notebooks", notebook.name)] = notebook
    return files


class Launcher:
    """Sends the requests (or, with ``dry_run``, prints them)."""

    def __init__(self, spec: ClusterSpec, dry_run: bool = False, client=None, echo=print):
        self.spec, self.dry_run, self.echo = spec, dry_run, echo
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("emr", region_name=self.spec.region)
        return self._client

    def _call(self, operation: str, **params):
        if self.dry_run:
            self.echo(json.dumps({"operation": operation, "params": params}, indent=2))
            return None
        method = getattr(self.client, _snake(operation))
        return method(**params)

    def stage(self, wheel: Path) -> list[str]:
        """Upload bootstrap, entry point, wheel and notebooks to ``code/``."""
        uploaded = []
        for uri, path in staging_files(self.spec, wheel).items():
            if self.dry_run:
                self.echo(f"upload {path} -> {uri}")
            else:
                storage.write_bytes(uri, Path(path).read_bytes())
            uploaded.append(uri)
        return uploaded

    def create(self) -> str | None:
        """Create the cluster; return its id (None in dry-run)."""
        response = self._call("RunJobFlow", **run_job_flow_request(self.spec))
        return response["JobFlowId"] if response else None

    def submit(self, cluster_id: str, steps: list[dict]) -> list[str]:
        """Add steps; return their ids."""
        response = self._call("AddJobFlowSteps", JobFlowId=cluster_id, Steps=steps)
        return response["StepIds"] if response else []

    def status(self, cluster_id: str) -> dict:
        """Cluster state and each step's state."""
        cluster = self._call("DescribeCluster", ClusterId=cluster_id)
        steps = self._call("ListSteps", ClusterId=cluster_id)
        if cluster is None:
            return {}
        return {
            "cluster": cluster["Cluster"]["Status"]["State"],
            "steps": {s["Id"]: s["Status"]["State"] for s in steps.get("Steps", [])},
            "logs": self.spec.uri("logs", "emr", cluster_id) + "/",
            "spark_events": EMR_EVENT_LOG_DIR + " (EMR's persistent Spark UI, History Server)",
            "output": self.spec.uri("output") + "/",
        }

    def wait(
        self, cluster_id: str, step_ids: list[str], poll_s: float = 30, timeout_s: float = 6 * 3600
    ) -> dict:
        """Poll until the steps end (or the cluster does), logging each change of state."""
        deadline, last = time.monotonic() + timeout_s, None
        while True:
            current = self.status(cluster_id)
            if current != last:
                log.info("cluster %s: %s", cluster_id, current)
                last = current
            states = [current["steps"].get(s) for s in step_ids]
            if all(s in ("COMPLETED", "FAILED", "CANCELLED", "INTERRUPTED") for s in states):
                return current
            if current["cluster"].startswith("TERMINATED"):
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"steps {step_ids} still running after {timeout_s} s")
            time.sleep(poll_s)

    def terminate(self, cluster_id: str) -> None:
        self._call("TerminateJobFlows", JobFlowIds=[cluster_id])


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
