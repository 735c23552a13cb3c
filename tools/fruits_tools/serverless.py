"""EMR Serverless: the chain as job runs on an application, with the environment archive.

- :func:`application_request`: ``CreateApplication`` for Spark on an EMR 7 release, X86_64 (the
  archive's wheels), a maximum capacity, started on the first job and stopped when idle. EMR
  Serverless 7.x images run Python 3.9, so the application names a custom image with
  Python 3.11 at ``/usr/bin/python3.11`` (``emr/serverless/Dockerfile``), where the archive's
  ``bin/python`` points.
- :func:`job_run_request`: one ``StartJobRun`` per command (``run``, then ``recognize``): the
  staged entry point, ``spark.archives`` and the interpreter inside it for the driver
  (``spark.emr-serverless.driverEnv.*``) and the executors (``spark.executorEnv.*``), the
  weights from S3 (``FRUITS_MODELS_URI``), logs to ``logs/serverless/`` in the bucket.
- :meth:`Serverless.wait`: polls ``GetJobRun`` until SUCCESS, FAILED or CANCELLED (botocore has
  no waiter for this service); :meth:`Serverless.driver_log_tail` fetches the driver's stderr
  from the run's S3 log location; :func:`job_cost` prices the run's billed resources from the
  dated table in ``emr/prices.json``.

Every request is built by a pure function (``--dry-run`` prints them; the tests validate them
against botocore's ``emr-serverless`` model and send them to moto's server).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fruits_tools import assets, pack
from helpers import defaults, storage

log = logging.getLogger(__name__)

#: EMR Serverless's release of the same Spark as the EMR on EC2 steps (3.5.6).
DEFAULT_RELEASE = "emr-7.13.0"
#: The job run's final states (GetJobRun's JobRunState; the others: SUBMITTED, PENDING,
#: SCHEDULED, RUNNING, CANCELLING, QUEUED).
JOB_RUN_FINAL = ("SUCCESS", "FAILED", "CANCELLED")
#: An application accepts job runs in these states (it auto-starts from CREATED and STOPPED).
APPLICATION_USABLE = ("CREATED", "STARTED", "STOPPED")
APPLICATION_PENDING = ("CREATING", "STARTING")
#: Where the runs' logs go in the bucket, and the driver's stderr under it (AWS's layout:
#: applications/<app>/jobs/<run>/SPARK_DRIVER/stderr.gz, under attempts/<n>/ when retried).
LOGS = ("logs", "serverless")
COMMANDS = {"run": "fruits: featurize + PCA", "recognize": "fruits: recognition"}
NO_IMAGE = (
    "EMR Serverless 7.x images run Python 3.9 and the archive needs /usr/bin/python3.11: build "
    "emr/serverless/Dockerfile, push it to ECR and pass --image-uri (docs/shared-clusters.md)"
)


@dataclass
class ServerlessSpec:
    """The application and where the project's files live."""

    bucket: str
    role_arn: str
    prefix: str = "fruits"
    region: str = defaults.REGION
    name: str = "fruits"
    release: str = DEFAULT_RELEASE
    image_uri: str | None = None
    max_vcpu: int = 32
    max_memory_gb: int = 128
    max_disk_gb: int = 400
    idle_minutes: int = 15
    timeout_minutes: int = 360

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", self.prefix.strip("/"), *parts])

    def key(self, *parts: str) -> str:
        return "/".join([self.prefix.strip("/"), *parts])


def application_request(spec: ServerlessSpec) -> dict:
    """``CreateApplication``: Spark, X86_64, the release, the maximum capacity, auto start and
    stop, and the custom image (Python 3.11) when given."""
    if not re.fullmatch(r"emr-7\.\d+\.\d+", spec.release):
        raise ValueError(f"EMR Serverless release must be emr-7.x (Spark 3.5), got {spec.release}")
    if not spec.image_uri:
        raise ValueError(NO_IMAGE)
    request = {
        "name": spec.name,
        "releaseLabel": spec.release,
        "type": "SPARK",
        "architecture": "X86_64",
        "maximumCapacity": {
            "cpu": f"{spec.max_vcpu} vCPU",
            "memory": f"{spec.max_memory_gb} GB",
            "disk": f"{spec.max_disk_gb} GB",
        },
        "autoStartConfiguration": {"enabled": True},
        "autoStopConfiguration": {"enabled": True, "idleTimeoutMinutes": spec.idle_minutes},
        "tags": {"project": "fruits"},
        "imageConfiguration": {"imageUri": spec.image_uri},
        # a retried request with the same token creates nothing twice
        "clientToken": uuid.uuid4().hex,
    }
    return request


def spark_settings(spec: ServerlessSpec) -> dict[str, str]:
    """The job runs' Spark settings: the archive (``spark.archives``), its interpreter for the
    driver and the executors (AWS's documented variables), the weights' and region's variables
    for both, and the executors' Python memory. What ``emr/configurations.json`` gives the
    project's cluster, spelled for EMR Serverless (``driverEnv`` where YARN has
    ``appMasterEnv``)."""
    from fruits_tools.emr import ClusterSpec, archive_settings

    cluster = ClusterSpec(bucket=spec.bucket, prefix=spec.prefix, region=spec.region)
    settings: dict[str, str] = {}
    for key, value in archive_settings(cluster).items():
        if key.startswith("spark.yarn.appMasterEnv."):
            key = "spark.emr-serverless.driverEnv." + key.removeprefix("spark.yarn.appMasterEnv.")
        elif key in ("spark.pyspark.python", "spark.dynamicAllocation.enabled"):
            continue  # the variables below name the interpreter; dynamic allocation is the default
        settings[key] = value
    settings["spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON"] = pack.ENV_PYTHON
    settings["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] = pack.ENV_PYTHON
    settings["spark.executorEnv.PYSPARK_PYTHON"] = pack.ENV_PYTHON
    return settings


def job_run_request(
    spec: ServerlessSpec,
    application_id: str,
    command: str,
    args: Sequence[str],
    jars: Sequence[str] = (),
) -> dict:
    """``StartJobRun`` of ``python -m helpers <command> <args>`` through the staged entry
    point, checked first with the chain's own parser."""
    if command not in COMMANDS:
        raise ValueError(f"command must be one of {', '.join(COMMANDS)}, got {command!r}")
    settings = spark_settings(spec)
    if jars:
        settings["spark.jars"] = ",".join(jars)
    parameters = " ".join(f"--conf {key}={value}" for key, value in settings.items())
    return {
        "applicationId": application_id,
        "executionRoleArn": spec.role_arn,
        "name": COMMANDS[command],
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": spec.uri("code", "run_pipeline.py"),
                "entryPointArguments": [command, *args],
                "sparkSubmitParameters": parameters,
            }
        },
        "configurationOverrides": {
            "monitoringConfiguration": {
                "s3MonitoringConfiguration": {"logUri": spec.uri(*LOGS) + "/"}
            }
        },
        "executionTimeoutMinutes": spec.timeout_minutes,
        "tags": {"project": "fruits"},
        "clientToken": uuid.uuid4().hex,
    }


def chain_requests(
    spec: ServerlessSpec,
    application_id: str,
    input_uri: str | None = None,
    output_uri: str | None = None,
    run_args: Sequence[str] = (),
    recognize_args: Sequence[str] = (),
    jars: Sequence[str] = (),
) -> list[dict]:
    """The chain's job runs, in order: ``run`` then ``recognize`` on its output. The extra
    arguments are refused in one line when the chain's parser would refuse them."""
    from fruits_tools.emr import check_chain_args

    check_chain_args("run", list(run_args))
    check_chain_args("recognize", list(recognize_args))
    output = output_uri or spec.uri("output")
    run = ["--input", input_uri or spec.uri("input"), "--output", output, *run_args]
    recognize = ["--output", output, *recognize_args]
    return [
        job_run_request(spec, application_id, "run", run, jars),
        job_run_request(spec, application_id, "recognize", recognize, jars),
    ]


# -- cost ------------------------------------------------------------------------------------


def prices(region: str, architecture: str = "X86_64", table: dict | None = None) -> dict:
    """EMR Serverless rates for ``region`` from ``emr/prices.json`` (its ``serverless`` part)."""
    table = table or json.loads(assets.emr_file("prices.json").read_text())
    serverless = table["serverless"]
    rates = serverless["regions"].get(region, {}).get(architecture)
    if rates is None:
        have = ", ".join(sorted(serverless["regions"]))
        raise ValueError(
            f"no EMR Serverless prices for {region} {architecture} in emr/prices.json "
            f"(has {have}): add them there"
        )
    return {**rates, "as_of": serverless["as_of"], "currency": table["currency"]}


def cost(
    vcpu_hours: float, gb_hours: float, storage_gb_hours: float, region: str, table=None
) -> dict:
    """The cost of billed resources (``billedResourceUtilization``: vCPU-hours, GB-hours and
    storage GB-hours beyond the 20 GB each worker has free), with a one-line summary."""
    rates = prices(region, table=table)
    parts = {
        "vcpu": vcpu_hours * rates["vcpu_hour"],
        "memory": gb_hours * rates["gb_hour"],
        "storage": storage_gb_hours * rates["storage_gb_hour"],
    }
    total = sum(parts.values())
    line = (
        f"cost: {vcpu_hours:.3f} vCPU-h, {gb_hours:.3f} GB-h, {storage_gb_hours:.3f} storage "
        f"GB-h in {region} = {total:.3f} {rates['currency']} (vCPU {parts['vcpu']:.3f} + memory "
        f"{parts['memory']:.3f} + storage {parts['storage']:.4f}; EMR Serverless prices of "
        f"{rates['as_of']}, emr/prices.json)"
    )
    return {**parts, "total": total, "line": line, "as_of": rates["as_of"]}


def job_cost(job_runs: Sequence[Mapping], region: str, table=None) -> dict:
    """The cost of finished job runs, from what EMR Serverless billed them."""
    billed = [run.get("billedResourceUtilization") or {} for run in job_runs]
    return cost(
        sum(b.get("vCPUHour", 0.0) for b in billed),
        sum(b.get("memoryGBHour", 0.0) for b in billed),
        sum(b.get("storageGBHour", 0.0) for b in billed),
        region,
        table,
    )


def estimate(
    images: int,
    rate_per_vcpu: float,
    fixed_s: float,
    region: str,
    workers: int = 8,
    worker_vcpu: int = 4,
    worker_gb: int = 16,
    table=None,
) -> dict:
    """A run's cost before it runs: the executors featurize at ``rate_per_vcpu`` images/s per
    vCPU (benchmarks/sizing.py's ``r``) after ``fixed_s`` seconds; the driver is one more
    worker; each worker is billed at least one minute; no storage beyond the free 20 GB."""
    wall = fixed_s + images / (workers * worker_vcpu * rate_per_vcpu)
    hours = max(wall, 60.0) / 3600
    billed = workers + 1
    return {**cost(billed * worker_vcpu * hours, billed * worker_gb * hours, 0.0, region, table),
            "wall_s": wall, "workers": workers}  # fmt: skip


# -- the service -----------------------------------------------------------------------------


class Serverless:
    """Sends the requests (or, with ``dry_run``, prints them)."""

    def __init__(self, spec: ServerlessSpec, dry_run=False, client=None, s3=None, echo=print):
        self.spec, self.dry_run, self.echo = spec, dry_run, echo
        self._client, self._s3 = client, s3

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("emr-serverless", region_name=self.spec.region)
        return self._client

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = storage.s3_client(region=self.spec.region)
        return self._s3

    def _call(self, operation: str, **params):
        if self.dry_run:
            self.echo(json.dumps({"operation": operation, "params": params}, indent=2))
            return None
        name = "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
        return getattr(self.client, name)(**params)

    def application(
        self,
        application_id: str | None = None,
        poll_s: float = 5,
        timeout_s: float = 600,
        sleep: Callable[[float], None] = time.sleep,
    ) -> str:
        """The application to run on: ``application_id`` checked (Spark, emr-7, X86_64, not
        terminated), or a new one, waited for until it can take job runs."""
        if application_id is None:
            created = self._call("CreateApplication", **application_request(self.spec))
            if created is None:
                return "DRYRUN-APPLICATION"
            application_id = created["applicationId"]
            self.echo(f"created application {application_id}")
            named = False
        elif self.dry_run:
            return application_id
        else:
            named = True
        deadline = time.monotonic() + timeout_s
        while True:
            app = self.client.get_application(applicationId=application_id)["application"]
            # (an application made here has the image it was given)
            check_application(app, image=named)
            if app["state"] in APPLICATION_USABLE:
                return application_id
            if time.monotonic() > deadline:
                raise TimeoutError(f"application {application_id} still {app['state']}")
            sleep(poll_s)

    def start(self, request: dict) -> str | None:
        response = self._call("StartJobRun", **request)
        return response["jobRunId"] if response else None

    def wait(
        self,
        application_id: str,
        job_run_id: str,
        poll_s: float = 30,
        timeout_s: float = 6 * 3600,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict:
        """Poll ``GetJobRun`` until a final state (SUCCESS, FAILED, CANCELLED); the job run as
        the service describes it. Any other state, a new one included, is waited on: one-line
        TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            run = self.client.get_job_run(applicationId=application_id, jobRunId=job_run_id)
            run = run["jobRun"]
            if run["state"] != last:
                log.info("job run %s: %s", job_run_id, run["state"])
                last = run["state"]
            if run["state"] in JOB_RUN_FINAL:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job run {job_run_id} still {run['state']} after {timeout_s:g} s "
                    f"(aws emr-serverless cancel-job-run --application-id {application_id} "
                    f"--job-run-id {job_run_id})"
                )
            sleep(poll_s)

    def driver_log_tail(
        self, application_id: str, job_run_id: str, lines: int = 40
    ) -> tuple[str, list[str]] | None:
        """The last lines of the driver's stderr (then stdout) from the run's S3 log location,
        the last attempt's when the run was retried; None when nothing is there yet."""
        base = self.spec.key(*LOGS, "applications", application_id, "jobs", job_run_id) + "/"
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.spec.bucket, Prefix=base
        )
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]

        def attempt(key: str) -> int:
            found = re.search(r"/attempts/(\d+)/", key)
            return int(found.group(1)) if found else 0

        for name in ("stderr.gz", "stdout.gz"):
            driver = [k for k in keys if k.endswith(f"/SPARK_DRIVER/{name}")]
            if driver:
                key = max(driver, key=attempt)
                body = self.s3.get_object(Bucket=self.spec.bucket, Key=key)["Body"].read()
                with contextlib.suppress(OSError):
                    body = gzip.decompress(body)
                text = body.decode("utf-8", errors="replace")
                return f"s3://{self.spec.bucket}/{key}", text.splitlines()[-lines:]
        return None

    def report(self, application_id: str, run: Mapping, lines: int = 40) -> list[str]:
        """Lines saying how a job run ended: its state and details; on failure, the tail of
        the driver's log."""
        out = [f"job run {run['jobRunId']} ({run.get('name', '')}): {run['state']}"]
        if run.get("stateDetails"):
            out.append(f"  {run['stateDetails']}")
        if run["state"] == "FAILED":
            found = self.driver_log_tail(application_id, run["jobRunId"], lines)
            if found:
                uri, tail = found
                out.append(f"  driver log, last {lines} lines of {uri}:")
                out += ["    " + line for line in tail]
            else:
                out.append(f"  no driver log under {self.spec.uri(*LOGS)}/ yet")
        return out


def check_application(app: Mapping, image: bool = True) -> None:
    """Refuse, in one line, an application the archive cannot run on (with ``image``: one
    without a custom image, whose Python is 3.9)."""
    problems = []
    if app.get("type", "").upper() != "SPARK":
        problems.append(f"type {app.get('type')}, not Spark")
    if not str(app.get("releaseLabel", "")).startswith("emr-7."):
        problems.append(f"release {app.get('releaseLabel')}, not emr-7.x")
    if app.get("architecture", "X86_64") != "X86_64":
        problems.append(f"architecture {app.get('architecture')}, not X86_64 (the wheels)")
    if app.get("state") == "TERMINATED":
        problems.append("terminated")
    if image and not (app.get("imageConfiguration") or {}).get("imageUri"):
        problems.append(NO_IMAGE)
    if problems:
        raise ValueError(f"application {app.get('applicationId')}: {'; '.join(problems)}")
