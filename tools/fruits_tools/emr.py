"""Run the pipeline on AWS EMR from code: stage, run (one-shot), create, submit, wait, teardown.

Every API request is built by a pure function (so ``--dry-run`` prints exactly what would be
sent, and tests validate it against botocore's service models). Credentials come from the
standard AWS chain; the cluster's nodes use the project's instance profile (:mod:`.iam`).

S3 layout under ``s3://<bucket>/<prefix>/``: ``input/`` (images), ``code/`` (bootstrap, wheel,
wheelhouse, weights, entry point, notebooks), ``output/`` (results), ``logs/`` (EMR logs).

A run is reported truthfully: the launcher waits for the steps it launched, exits non-zero when
one failed or was cancelled or when the cluster ended with errors, and then prints the step's
``FailureDetails`` and the tail of the driver's log (in cluster deploy mode, the stderr of the
YARN application master's container, which EMR copies under the cluster's LogUri).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import re
import shlex
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fruits_tools import assets, iam
from helpers import defaults, storage

log = logging.getLogger(__name__)

#: EMR 7.13: Spark 3.5.6 on Amazon Linux 2023; the bootstrap adds Python 3.11 (see README).
DEFAULT_RELEASE = "emr-7.13.0"
VENV_PYTHON = "/opt/fruits-venv/bin/python"
#: Where the notebooks step copies the staged jars and notebooks on the primary node.
JARS_DIR = "/tmp/fruits-jars"
NOTEBOOKS_DIR = "/tmp/fruits-notebooks"
#: Spark's home on EMR's nodes.
SPARK_HOME = "/usr/lib/spark"
#: Where Spark on EMR logs its events by default (the persistent Spark UI is fed from there).
EMR_EVENT_LOG_DIR = "hdfs:///var/log/spark/apps"
#: EMR's Spark History Server on the primary node, over EMR_EVENT_LOG_DIR: where the notebooks
#: step's notebook 04 reads notebook 02's application (its event log is not under the output)
EMR_HISTORY_SERVER = "http://localhost:18080"
SECURITY_CONFIGURATION = "fruits-security"
#: The final states of a step and of a cluster (EMR's API reference, StepState and
#: ClusterState).
STEP_ENDED = ("COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED")
CLUSTER_ENDED = ("TERMINATED", "TERMINATED_WITH_ERRORS")
#: Each node's root volume (GB), set as EbsRootVolumeSize: EMR's default (15 GB on 7.x) holds the
#: OS and EMR's applications; the bootstrap adds its environment there (2.4 GB installed,
#: measured in the rehearsal with ``du -sm`` of the built venv) and checks 3 GB free first. The
#: wheel and the wheelhouse (~0.5 GB) are copied to /mnt, the data volume (``ebs_gb``).
ROOT_VOLUME_GB = 20
#: EMR Studio's PySpark kernel (Sparkmagic through Livy), which the staged copies declare.
STUDIO_KERNELSPEC = {"name": "pysparkkernel", "display_name": "PySpark", "language": "python"}
#: The notebooks' tag of a figure cell, and what the Studio copies add at its end: Livy's magic
#: that returns pyplot's current figure as image/png (helpers.faces.show.figure sets it), with
#: the ``plt`` it looks up in the session's namespace (the notebooks never import it)
FIGURE_TAG = "figure"
MATPLOT = "import matplotlib.pyplot as plt\n%matplot plt"
#: DescribeNotebookExecution's final states (the others: START_PENDING, STARTING, RUNNING,
#: FINISHING, FAILING, STOP_PENDING, STOPPING)
NOTEBOOK_EXECUTION_FINAL = ("FINISHED", "FAILED", "STOPPED")


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
    ebs_gb: int = 64
    root_volume_gb: int = ROOT_VOLUME_GB
    idle_timeout_s: int = 3600
    service_role: str = iam.SERVICE_ROLE
    instance_profile: str = iam.INSTANCE_ROLE
    security_configuration: str | None = SECURITY_CONFIGURATION
    subnet_id: str | None = None
    #: EMR-managed security groups (primary, core and task), tagged; None: EMR's defaults,
    #: which it creates in the subnet's VPC (then the VPC must carry the tag)
    security_groups: tuple[str, str] | None = None
    wheel_name: str = "fruits_helpers-0.1.0-py3-none-any.whl"
    kms_key_arn: str | None = None

    def uri(self, *parts: str) -> str:
        return "/".join([f"s3://{self.bucket}", self.prefix.strip("/"), *parts])

    def key(self, *parts: str) -> str:
        """The object key of ``uri(*parts)`` in the bucket."""
        return "/".join([self.prefix.strip("/"), *parts])


def render_configurations(spec: ClusterSpec, path: Path | None = None) -> list:
    """``emr/configurations.json`` with its ``${...}`` placeholders filled in.

    Spark's event logs stay where EMR puts them (``hdfs:///var/log/spark/apps``, which exists
    before any application starts): EMR's persistent Spark UI and its History Server read them
    from there, and an S3 prefix that nothing has created yet would stop every application.
    ``FRUITS_MODELS_URI`` points the weight lookup at the staged weights, so no node downloads
    them from the internet. ``AWS_REGION`` (and ``AWS_DEFAULT_REGION``, which botocore reads)
    give the driver's and executors' S3 clients the cluster's region: in a private subnet only
    S3's regional endpoint is reachable (through a gateway endpoint).
    """
    path = path or assets.emr_file("configurations.json")
    text = string.Template(path.read_text()).substitute(
        BUCKET=spec.bucket,
        PREFIX=spec.prefix,
        MODELS_URI=spec.uri("code", "models"),
        REGION=spec.region,
    )
    return json.loads(text)


def archive_settings(spec: ClusterSpec, archive_uri: str | None = None) -> dict[str, str]:
    """Spark settings that run the chain from the environment archive (``pack``) on a cluster
    without the project's bootstrap and configuration: ``emr/configurations.json``'s
    spark-defaults (a shared cluster has none of them: the weights' and the region's variables,
    the executors' Python memory) with the interpreter inside the archive, which YARN unpacks
    as ``./environment`` in every container (``spark.archives``). Event logs stay the cluster's.
    """
    from fruits_tools import pack

    settings: dict[str, str] = {}
    for classification in render_configurations(spec):
        if classification["Classification"] == "spark-defaults":
            settings.update(classification["Properties"])
    settings.pop("spark.eventLog.enabled", None)
    settings["spark.pyspark.python"] = pack.ENV_PYTHON
    archive_uri = archive_uri or spec.uri("code", pack.ARCHIVE_NAME)
    settings["spark.archives"] = f"{archive_uri}#{pack.ALIAS}"
    return settings


def studio_configure_cell(spec: ClusterSpec, archive_uri: str | None = None) -> str:
    """The first cell of a notebook on a shared cluster's EMR Studio (PySpark kernel): Livy
    starts the session with the archive and :func:`archive_settings`. Livy must run sessions
    in cluster mode (``livy.spark.deploy-mode``), where the driver is in a YARN container."""
    return "%%configure -f\n" + json.dumps({"conf": archive_settings(spec, archive_uri)}, indent=1)


def render_policy(spec: ClusterSpec) -> dict:
    """The instance profile's least-privilege policy for this bucket, prefix and key."""
    return iam.instance_policy(spec.bucket, spec.prefix, spec.kms_key_arn, spec.region)


def security_configuration(
    kms_key_arn: str | None = None, tls_certificates: str | None = None
) -> dict:
    """An EMR security configuration: S3 at rest (SSE-KMS with the key, else SSE-S3), local
    disks and EBS volumes with the key, TLS in transit when a PEM certificate zip is given.

    Local-disk and EBS encryption need a KMS key of your own: EMR has no SSE-S3 equivalent for
    them, so without a key the configuration is refused rather than silently weaker.
    """
    if not kms_key_arn:
        raise ValueError(
            "a security configuration encrypts local disks and EBS with a KMS key: pass "
            "--kms-key arn:aws:kms:REGION:ACCOUNT:key/ID (or --no-security-configuration)"
        )
    at_rest = {
        "S3EncryptionConfiguration": {"EncryptionMode": "SSE-KMS", "AwsKmsKey": kms_key_arn},
        "LocalDiskEncryptionConfiguration": {
            "EncryptionKeyProviderType": "AwsKms",
            "AwsKmsKey": kms_key_arn,
            "EnableEbsEncryption": True,
        },
    }
    encryption: dict = {
        "EnableAtRestEncryption": True,
        "EnableInTransitEncryption": bool(tls_certificates),
        "AtRestEncryptionConfiguration": at_rest,
    }
    if tls_certificates:
        if not tls_certificates.startswith("s3://") or not tls_certificates.endswith(".zip"):
            raise ValueError(
                f"--tls-certificates must be an s3://.../*.zip of PEM files, got {tls_certificates}"
            )
        encryption["InTransitEncryptionConfiguration"] = {
            "TLSCertificateConfiguration": {
                "CertificateProviderType": "PEM",
                "S3Object": tls_certificates,
            }
        }
    return {"EncryptionConfiguration": encryption}


def _instance_group(name: str, role: str, market: str, type_: str, count: int, ebs_gb: int):
    return {
        "Name": name, "InstanceRole": role, "Market": market,
        "InstanceType": type_, "InstanceCount": count,
        "EbsConfiguration": {
            "EbsBlockDeviceConfigs": [
                {"VolumeSpecification": {"VolumeType": "gp3", "SizeInGB": ebs_gb},
                 "VolumesPerInstance": 1}
            ],
            "EbsOptimized": True,
        },
    }  # fmt: skip


def run_job_flow_request(spec: ClusterSpec, steps: list[dict] | None = None) -> dict:
    """Parameters of ``RunJobFlow``.

    With ``steps``: a one-shot (transient) cluster that runs them and terminates
    (``KeepJobFlowAliveWhenNoSteps=False``). Without: a cluster that waits for steps and ends
    after ``idle_timeout_s`` of idleness.
    """
    groups = [
        _instance_group("primary", "MASTER", "ON_DEMAND", spec.primary_type, 1, spec.ebs_gb),
        _instance_group("core", "CORE", "ON_DEMAND", spec.core_type, spec.core_count, spec.ebs_gb),
    ]
    if spec.task_count:
        market = "SPOT" if spec.task_spot else "ON_DEMAND"
        groups.append(
            _instance_group("task", "TASK", market, spec.task_type, spec.task_count, spec.ebs_gb)
        )
    instances: dict = {"InstanceGroups": groups, "KeepJobFlowAliveWhenNoSteps": steps is None}
    if spec.subnet_id:
        instances["Ec2SubnetId"] = spec.subnet_id
    if spec.security_groups:
        instances["EmrManagedMasterSecurityGroup"] = spec.security_groups[0]
        instances["EmrManagedSlaveSecurityGroup"] = spec.security_groups[1]
    request = {
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
                    "Args": [
                        "--wheel", spec.uri("code", spec.wheel_name),
                        "--wheelhouse", spec.uri("code", "wheelhouse"),
                        "--region", spec.region,
                    ],
                },
            }
        ],
        "Configurations": render_configurations(spec),
        "EbsRootVolumeSize": spec.root_volume_gb,
        "ServiceRole": spec.service_role,
        "JobFlowRole": spec.instance_profile,
        "VisibleToAllUsers": True,
        "Tags": [*iam.TAGS, iam.MANAGED_POLICY_TAG],
    }  # fmt: skip
    if steps is None:
        request["AutoTerminationPolicy"] = {"IdleTimeout": spec.idle_timeout_s}
    else:
        request["Steps"] = steps
    if spec.security_configuration:
        request["SecurityConfiguration"] = spec.security_configuration
    return request


#: Options of the chain's commands that the launcher sets itself (from --input, --output and
#: the cluster): given again among a step's arguments they would silently win.
LAUNCHER_OPTIONS = {
    "run": ("--input", "--output", "--master"),
    "recognize": ("--output", "--master"),
    "notebooks": ("--output", "--notebook-dir", "--kernel"),
}


def check_chain_args(command: str, args: Sequence[str]) -> None:
    """Refuse, in one line, arguments that ``python -m helpers <command>`` would reject, before
    a cluster is paid for: checked with the chain's own parser (what the step will run)."""
    import contextlib
    import io

    from helpers.faces.args import build_parser

    for option in LAUNCHER_OPTIONS[command]:
        if any(a == option or a.startswith(option + "=") for a in args):
            raise ValueError(f"{command} arguments: {option} is set by the launcher, not here")
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser().parse_args([command, *args])
        except SystemExit:
            reason = errors.getvalue().strip().splitlines()[-1:] or ["invalid"]
            raise ValueError(f"{command} arguments: {reason[0]}") from None


def shell_script(env: Mapping[str, str], commands: Sequence[Sequence[str]]) -> str:
    """One shell command line: ``export`` of ``env``, then ``commands``, each run only when the
    one before succeeded (`` && ``); every value and argument is quoted for the shell."""
    for name in env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"not an environment variable's name: {name!r}")
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
    parts = [f"export {exports}"] if env else []
    return " && ".join([*parts, *(shlex.join(command) for command in commands)])


def pipeline_steps(
    spec: ClusterSpec,
    input_uri: str | None = None,
    output_uri: str | None = None,
    mode: str = "cli",
    extra_args: Sequence[str] | None = None,
    jars: Sequence[str] = (),
    recognize_args: Sequence[str] | None = None,
    environment: str = "bootstrap",
) -> list[dict]:
    """Steps running the chain: ``cli`` (spark-submit of the helpers CLI: ``run``, then
    ``recognize``) or ``notebooks`` (papermill on the primary node; executed notebooks written
    to ``<output>/notebooks/``).

    ``environment``: ``bootstrap`` (the project's cluster: its bootstrap's venv and
    configuration) or ``archive`` (any EMR 7 cluster: the staged environment archive and
    :func:`archive_settings` on each spark-submit; cli mode only, since the notebooks' kernels
    start Spark on the primary node, where YARN unpacks nothing).

    Args:
        extra_args: more arguments of ``helpers run`` (cli) or ``helpers notebooks``
            (notebooks: ``-p NAME VALUE``), checked here with the chain's own parser.
        jars: staged jars (S3 URIs, :meth:`Launcher.staged_jars`) for the driver and
            executors: sparkMeasure's, for the featurization's stage metrics.
        recognize_args: more arguments of ``helpers recognize`` (cli mode only).
    """
    input_uri = input_uri or spec.uri("input")
    output_uri = output_uri or spec.uri("output")
    extra, more = list(extra_args or []), list(recognize_args or [])
    _check_step_args(mode, extra, more)
    if environment not in ("bootstrap", "archive"):
        raise ValueError(f"environment must be 'bootstrap' or 'archive', got {environment!r}")
    if environment == "archive" and mode != "cli":
        raise ValueError(
            "the environment archive runs cli steps (cluster mode): the notebooks mode needs "
            "the bootstrap's environment on the primary node (docs/shared-clusters.md)"
        )
    if mode == "cli":
        settings = archive_settings(spec) if environment == "archive" else None
        commands = _cli_commands(spec, input_uri, output_uri, extra, more, jars, settings)
    elif mode == "notebooks":
        commands = [_notebooks_command(spec, input_uri, output_uri, extra, jars)]
    else:
        raise ValueError(f"mode must be 'cli' or 'notebooks', got {mode!r}")
    return _step_requests(commands)


def _check_step_args(mode: str, extra: list[str], more: list[str]) -> None:
    """Refuse the steps' arguments before a cluster is paid for (see :func:`check_chain_args`)."""
    if mode in ("cli", "notebooks"):
        check_chain_args("run" if mode == "cli" else "notebooks", extra)
    if mode == "notebooks" and more:
        raise ValueError(
            "notebooks mode has no recognize step: give notebook 05's parameters to the run "
            "(-p AUGMENT_COPIES 1)"
        )
    if more:
        check_chain_args("recognize", more)


def _cli_commands(
    spec: ClusterSpec,
    input_uri: str,
    output_uri: str,
    extra: list[str],
    more: list[str],
    jars: Sequence[str],
    settings: Mapping[str, str] | None = None,
) -> list[tuple[str, list[str]]]:
    """The cli mode's (name, argv) pairs: ``run``, then ``recognize`` on its output; with
    ``settings`` (:func:`archive_settings`), each carries them: ``--archives`` and ``--conf``."""
    submit = ["spark-submit", "--deploy-mode", "cluster"]
    if jars:
        submit += ["--jars", ",".join(jars)]
    for key, value in (settings or {}).items():
        if key == "spark.archives":
            submit += ["--archives", value]
        else:
            submit += ["--conf", f"{key}={value}"]
    entry = [*submit, spec.uri("code", "run_pipeline.py")]
    run = [*entry, "run", "--input", input_uri, "--output", output_uri, *extra]
    # recognition featurizes its cluttered pictures by the features' recipe, which names
    # the run's weight file (features/_manifest.json): nothing to pass on here
    recognize = [*entry, "recognize", "--output", output_uri, *more]
    return [("fruits: featurize + PCA", run), ("fruits: recognition", recognize)]


def _notebooks_command(
    spec: ClusterSpec, input_uri: str, output_uri: str, extra: list[str], jars: Sequence[str]
) -> tuple[str, list[str]]:
    """The notebooks mode's (name, argv): one ``bash -c`` script on the primary node that
    copies the staged jars and notebooks there, then runs the notebooks with papermill."""
    local_jars = [f"{JARS_DIR}/{uri.rsplit('/', 1)[-1]}" for uri in jars]
    measured = [j for j in local_jars if j.rsplit("/", 1)[-1].startswith("spark-measure_")]
    env = {
        # EMR's own pyspark (on the environment's path via the bootstrap) needs SPARK_HOME
        "SPARK_HOME": SPARK_HOME,
        # the kernels start Spark from a plain Python process, where spark.pyspark.python is
        # not applied, so executors would run the system python3
        "PYSPARK_PYTHON": VENV_PYTHON,
        # that process reads no spark-env.sh either: the weights come from the bucket, never
        # from the internet
        "FRUITS_MODELS_URI": spec.uri("code", "models"),
        # a step's shell has no spark-env: papermill's and the kernels' S3 clients need the
        # region (in a private subnet only the regional endpoint answers)
        "AWS_REGION": spec.region,
    }
    if measured:  # a local copy of the staged jar, for the kernels' sessions
        env["FRUITS_SPARKMEASURE_JAR"] = measured[0]
    copy = ["aws", "s3", "cp", "--region", spec.region, "--only-show-errors"]
    fetch = [[*copy, uri, f"{JARS_DIR}/"] for uri in jars]
    fetch.append([*copy, "--recursive", spec.uri("code", "notebooks"), NOTEBOOKS_DIR])
    monitoring = []
    if not {"SPARK_UI_URL", "EVENT_LOG_DIR"} & {extra[i + 1] for i, a in enumerate(extra[:-1])
                                                 if a == "-p"}:  # fmt: skip
        monitoring = ["-p", "SPARK_UI_URL", EMR_HISTORY_SERVER]
    notebooks = [VENV_PYTHON, "-m", "helpers", "notebooks", "--notebook-dir", NOTEBOOKS_DIR,
                 "--kernel", "fruits", "-p", "SPARK_MASTER", "yarn", "-p", "INPUT_URI", input_uri,
                 *monitoring, "--output", output_uri, *extra]  # fmt: skip
    return "fruits: notebooks 01-05", ["bash", "-c", shell_script(env, [*fetch, notebooks])]


def _step_requests(commands: Sequence[tuple[str, list[str]]]) -> list[dict]:
    """``AddJobFlowSteps``' steps: command-runner.jar running each (name, argv) in turn."""
    return [
        {
            "Name": name,
            # a failed step cancels the ones after it: they would read stale outputs
            "ActionOnFailure": "CONTINUE" if i == len(commands) - 1 else "CANCEL_AND_WAIT",
            "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
        }
        for i, (name, args) in enumerate(commands)
    ]


def notebook_execution_request(
    spec: ClusterSpec,
    cluster_id: str,
    notebook: str,
    params: dict,
    service_role: str,
    name: str | None = None,
) -> dict:
    """Parameters of ``StartNotebookExecution``: a staged notebook (``code/notebooks-studio/``,
    the copies that declare the PySpark kernel) run by EMR Studio's engine on ``cluster_id``,
    the executed copy written to ``output/notebooks-studio/``."""
    stem = Path(notebook).stem
    return {
        "NotebookExecutionName": name or f"fruits-{stem}",
        "NotebookS3Location": {
            "Bucket": spec.bucket,
            "Key": spec.key("code", "notebooks-studio", f"{stem}.ipynb"),
        },
        "OutputNotebookS3Location": {
            "Bucket": spec.bucket,
            "Key": spec.key("output", "notebooks-studio"),
        },
        "OutputNotebookFormat": "HTML",
        "NotebookParams": json.dumps(params),
        "ExecutionEngine": {"Id": cluster_id, "Type": "EMR"},
        "ServiceRole": service_role,
        "Tags": [*iam.TAGS, iam.MANAGED_POLICY_TAG],
    }


def studio_notebook(path: Path) -> bytes:
    """A notebook's staged copy for EMR Studio and EMR's JupyterHub: the PySpark kernel
    declared, and Livy's ``%matplot plt`` at the end of each code cell tagged ``figure`` (in
    that kernel a figure is shown only through the magic; ``helpers.faces.show.figure`` makes
    the cell's figure pyplot's current one). Generated here, never edited by hand.

    The committed notebooks keep ``python3`` (papermill and nbval run them locally with it).
    """
    book = json.loads(Path(path).read_text())
    book.setdefault("metadata", {})["kernelspec"] = dict(STUDIO_KERNELSPEC)
    for cell in book.get("cells", []):
        if cell.get("cell_type") == "code" and FIGURE_TAG in cell.get("metadata", {}).get(
            "tags", []
        ):
            source = cell["source"]
            text = "".join(source) if isinstance(source, list) else source
            cell["source"] = text.rstrip("\n") + "\n" + MATPLOT
    return (json.dumps(book, indent=1) + "\n").encode()


def staging_files(
    spec: ClusterSpec, wheel: Path, weights: Path | None = None, jars: Sequence[Path] = ()
) -> dict[str, Path]:
    """Local files to upload to ``code/`` before creating the cluster (S3 URI -> path)."""
    files = {
        spec.uri("code", "bootstrap.sh"): assets.emr_file("bootstrap.sh"),
        spec.uri("code", "run_pipeline.py"): assets.emr_file("run_pipeline.py"),
        spec.uri("code", spec.wheel_name): wheel,
    }
    if weights is not None:
        files[spec.uri("code", "models", Path(weights).name)] = Path(weights)
    for jar in jars:
        files[spec.uri("code", "jars", Path(jar).name)] = Path(jar)
    for notebook in assets.notebooks():
        files[spec.uri("code", "notebooks", notebook.name)] = notebook
    return files


# -- cost ------------------------------------------------------------------------------------


def estimate_cost(spec: ClusterSpec, hours: float, prices: dict | None = None) -> dict:
    """On-demand cost of ``hours`` of the cluster: instance hours x (EC2 + EMR price) plus
    EBS, from the dated table ``emr/prices.json``. Spot task nodes are counted at the
    on-demand price (an upper bound)."""
    prices = prices or json.loads(assets.emr_file("prices.json").read_text())
    region = prices["regions"].get(spec.region)
    if region is None:
        raise ValueError(
            f"no prices for region {spec.region} in emr/prices.json "
            f"(has {', '.join(sorted(prices['regions']))}): add them there"
        )
    nodes = [(spec.primary_type, 1), (spec.core_type, spec.core_count)]
    if spec.task_count:
        nodes.append((spec.task_type, spec.task_count))
    ec2 = emr = 0.0
    for type_, count in nodes:
        if type_ not in region["ec2_per_hour"] or type_ not in prices["emr_per_hour"]:
            raise ValueError(f"no price for {type_} in {spec.region} in emr/prices.json: add it")
        ec2 += count * region["ec2_per_hour"][type_] * hours
        emr += count * prices["emr_per_hour"][type_] * hours
    count = sum(c for _, c in nodes)
    gb = count * (spec.ebs_gb + spec.root_volume_gb)
    ebs = gb * region["ebs_gp3_per_gb_month"] * hours / 730  # AWS bills a month as 730 h
    total = ec2 + emr + ebs
    line = (
        f"cost: {count} instances x {hours:g} h in {spec.region} = {total:.2f} "
        f"{prices['currency']} (EC2 {ec2:.2f} + EMR {emr:.2f} + EBS {gb} GB {ebs:.3f}; "
        f"on-demand prices of {prices['as_of']}, emr/prices.json)"
    )
    return {"instances": count, "hours": hours, "ec2": ec2, "emr": emr, "ebs": ebs,
            "total": total, "currency": prices["currency"], "as_of": prices["as_of"],
            "line": line}  # fmt: skip


# -- outcome ---------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """How the steps and the cluster ended."""

    cluster_id: str
    cluster_state: str
    cluster_reason: dict = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)

    @property
    def failed_steps(self) -> list[dict]:
        return [s for s in self.steps if s["Status"]["State"] != "COMPLETED"]

    @property
    def ok(self) -> bool:
        """Every step COMPLETED and the cluster did not end with errors."""
        return not self.failed_steps and self.cluster_state != "TERMINATED_WITH_ERRORS"

    def summary(self) -> dict:
        return {
            "cluster_id": self.cluster_id,
            "cluster": self.cluster_state,
            "steps": {s["Id"]: s["Status"]["State"] for s in self.steps},
            "ok": self.ok,
        }


class Launcher:
    """Sends the requests (or, with ``dry_run``, prints them)."""

    def __init__(
        self,
        spec: ClusterSpec,
        dry_run: bool = False,
        client=None,
        echo=print,
        s3=None,
        owner: str | None = None,
    ):
        self.spec, self.dry_run, self.echo = spec, dry_run, echo
        self._client, self._s3, self._owner, self._ec2 = client, s3, owner, None

    @property
    def client(self):
        if self._client is None:
            import boto3

            self._client = boto3.client("emr", region_name=self.spec.region)
        return self._client

    @property
    def ec2(self):
        if self._ec2 is None:
            import boto3

            self._ec2 = boto3.client("ec2", region_name=self.spec.region)
        return self._ec2

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = storage.s3_client(region=self.spec.region)
        return self._s3

    @property
    def owner(self) -> str:
        """This account's id: S3 requests name it as ``ExpectedBucketOwner``."""
        if self._owner is None:
            from fruits_tools.s3_staging import account_id

            self._owner = account_id(self.spec.region)
        return self._owner

    def _call(self, operation: str, **params):
        if self.dry_run:
            self.echo(json.dumps({"operation": operation, "params": params}, indent=2))
            return None
        method = getattr(self.client, _snake(operation))
        return method(**params)

    # -- staging ------------------------------------------------------------------------------

    def stage(
        self,
        wheel: Path,
        wheelhouse: Path | None = None,
        weights: Path | None = None,
        jars: Sequence[Path] = (),
        archive: Path | None = None,
    ) -> list[str]:
        """Upload bootstrap, entry point, wheel, weights, jars, notebooks (and their EMR Studio
        copies) to ``code/``, then the wheelhouse to ``code/wheelhouse/`` and the environment
        archive (``pack``) with its ``.json`` to ``code/`` (multipart, skipped when the same
        bytes are there already)."""
        uploads = {uri: Path(path).read_bytes for uri, path in staging_files(
            self.spec, wheel, weights, jars).items()}  # fmt: skip
        for notebook in assets.notebooks():
            uri = self.spec.uri("code", "notebooks-studio", notebook.name)
            uploads[uri] = lambda n=notebook: studio_notebook(n)
        uploaded = []
        for uri, read in uploads.items():
            if self.dry_run:
                self.echo(f"upload -> {uri}")
            else:
                _, key = storage.split_s3(uri)
                self.s3.put_object(
                    Bucket=self.spec.bucket, Key=key, Body=read(), ExpectedBucketOwner=self.owner
                )
            uploaded.append(uri)
        if wheelhouse is not None:
            target = self.spec.uri("code", "wheelhouse")
            if self.dry_run:
                self.echo(f"upload {wheelhouse}/ -> {target}/")
            else:
                from fruits_tools import s3_staging

                s3_staging.upload_folder(
                    wheelhouse, target, client=self.s3, expected_owner=self.owner
                )
            uploaded.append(target + "/")
        if archive is not None:
            uploaded += self._stage_archive(Path(archive))
        return uploaded

    def _stage_archive(self, archive: Path) -> list[str]:
        from fruits_tools import pack, s3_staging

        if archive.name != pack.ARCHIVE_NAME:
            raise ValueError(f"the archive must be named {pack.ARCHIVE_NAME} (got {archive.name})")
        files = [archive, pack.manifest(archive)]
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"no {path.name} at {path.parent} (run pack first)")
        uris = [self.spec.uri("code", path.name) for path in files]
        if self.dry_run:
            for path, uri in zip(files, uris):
                self.echo(f"upload {path} -> {uri}")
        else:
            s3_staging.upload_folder(archive.parent, self.spec.uri("code"), client=self.s3,
                                     expected_owner=self.owner, only=files)  # fmt: skip
        return uris

    def staged_jars(self) -> list[str]:
        """The jars ``stage`` uploaded to ``code/jars/`` (S3 URIs), for the steps' ``--jars``."""
        prefix = self.spec.key("code", "jars") + "/"
        return [f"s3://{self.spec.bucket}/{k}" for k in self._keys(prefix) if k.endswith(".jar")]

    # -- clusters and steps -------------------------------------------------------------------

    def preflight(self) -> None:
        """Refuse, in one line, a launch that could only fail later and cost a cluster start:
        nothing staged, a security configuration that does not exist, or a network the v2
        service role cannot launch into. Without ``subnet_id``, a tagged subnet of the region is
        chosen (the default subnet is untagged: the launch would be refused)."""
        from botocore.exceptions import ClientError

        from fruits_tools import network

        staged = self._keys(self.spec.key("code", "bootstrap.sh"))
        if self.spec.key("code", "bootstrap.sh") not in staged:
            raise ValueError(f"nothing staged under {self.spec.uri('code')}/: run emr stage first")
        if self.spec.security_configuration:
            try:
                self.client.describe_security_configuration(Name=self.spec.security_configuration)
            except ClientError:
                raise ValueError(
                    f"no security configuration {self.spec.security_configuration}: run "
                    "emr security-config create --kms-key ..., or pass --no-security-configuration"
                ) from None
        if not self.spec.subnet_id:
            self.spec.subnet_id = network.find_subnet(self.ec2, self.spec.region)
            log.info("launching into %s (tagged for EMR's managed policies)", self.spec.subnet_id)
        network.check(self.ec2, self.spec.subnet_id, tuple(self.spec.security_groups or ()))

    def create(self, steps: list[dict] | None = None) -> str | None:
        """Create the cluster (one-shot when ``steps`` are given); its id (None in dry-run)."""
        response = self._call("RunJobFlow", **run_job_flow_request(self.spec, steps))
        return response["JobFlowId"] if response else None

    def submit(self, cluster_id: str, steps: list[dict]) -> list[str]:
        """Add steps; return their ids."""
        response = self._call("AddJobFlowSteps", JobFlowId=cluster_id, Steps=steps)
        return response["StepIds"] if response else []

    def step_ids(self, cluster_id: str) -> list[str]:
        """The cluster's steps, oldest first (ListSteps returns the newest first)."""
        pages = self.client.get_paginator("list_steps").paginate(ClusterId=cluster_id)
        steps = [s for page in pages for s in page.get("Steps", [])]
        return [s["Id"] for s in reversed(steps)]

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
        self,
        cluster_id: str,
        step_ids: list[str] | None = None,
        poll_s: float = 30,
        timeout_s: float = 6 * 3600,
        until_terminated: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> RunOutcome:
        """Wait for ``step_ids`` (default: every step of the cluster) to end, one after the
        other; with ``until_terminated`` also for the cluster to end (a one-shot cluster).

        Polls ``DescribeStep`` and ``DescribeCluster`` itself: boto3's ``step_complete`` waiter
        has no acceptor for INTERRUPTED, so a step interrupted by a lost primary node waited
        until the timeout. Ends on every final state of a step (COMPLETED, CANCELLED, FAILED,
        INTERRUPTED) and as soon as the cluster ends (TERMINATED, TERMINATED_WITH_ERRORS),
        whatever its steps say then. Refuses a cluster without steps rather than returning at
        once.
        """
        step_ids = list(step_ids) if step_ids else self.step_ids(cluster_id)
        if not step_ids:
            raise ValueError(f"cluster {cluster_id} has no steps: nothing to wait for")
        deadline = time.monotonic() + timeout_s
        pending = list(step_ids)
        while True:
            while pending:
                step = self.client.describe_step(ClusterId=cluster_id, StepId=pending[0])["Step"]
                if step["Status"]["State"] not in STEP_ENDED:
                    break
                log.info("step %s of %s: %s", pending[0], cluster_id, step["Status"]["State"])
                pending.pop(0)
            cluster = self.client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
            ended = cluster["State"] in CLUSTER_ENDED
            if ended or (not pending and not until_terminated):
                return self.outcome(cluster_id, step_ids)
            if time.monotonic() > deadline:
                what = f"step {pending[0]}" if pending else "the cluster to end"
                raise TimeoutError(
                    f"{cluster_id}: still waiting for {what} after {timeout_s:g} s "
                    f"(cluster {cluster['State']})"
                )
            sleep(poll_s)

    def outcome(self, cluster_id: str, step_ids: list[str]) -> RunOutcome:
        """How ``step_ids`` and the cluster stand now."""
        status = self.client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
        steps = [
            self.client.describe_step(ClusterId=cluster_id, StepId=s)["Step"] for s in step_ids
        ]
        return RunOutcome(cluster_id, status["State"], status.get("StateChangeReason", {}), steps)

    def report(self, outcome: RunOutcome, tail_lines: int = 40) -> list[str]:
        """Lines saying what failed and why: each failed step's state and ``FailureDetails``,
        the tail of its driver log, and the cluster's reason when it ended with errors."""
        lines = []
        for step in outcome.failed_steps:
            status = step["Status"]
            lines.append(f"step {step['Id']} ({step.get('Name', '')}): {status['State']}")
            details = status.get("FailureDetails") or {}
            for key in ("Reason", "Message", "LogFile"):
                if details.get(key):
                    lines.append(f"  {key}: {details[key]}")
            if status["State"] == "FAILED":
                found = self.driver_log_tail(outcome.cluster_id, step["Id"], tail_lines)
                if found:
                    uri, tail = found
                    lines.append(f"  driver log, last {tail_lines} lines of {uri}:")
                    lines += ["    " + t for t in tail]
                else:
                    lines.append(
                        f"  no driver log under {self.log_uri(outcome.cluster_id)} yet "
                        "(EMR copies logs there about every 5 minutes)"
                    )
        ended_early = outcome.failed_steps and outcome.cluster_state in CLUSTER_ENDED
        if outcome.cluster_state == "TERMINATED_WITH_ERRORS" or ended_early:
            reason = outcome.cluster_reason
            lines.append(
                f"cluster {outcome.cluster_id}: {outcome.cluster_state} "
                f"({reason.get('Code', '')}: {reason.get('Message', '')})"
            )
        return lines

    def log_uri(self, cluster_id: str) -> str:
        return self.spec.uri("logs", "emr", cluster_id) + "/"

    def driver_log_tail(
        self, cluster_id: str, step_id: str, lines: int = 40
    ) -> tuple[str, list[str]] | None:
        """The last lines of the step's driver log, fetched from the LogUri.

        spark-submit in cluster deploy mode runs the driver in the YARN application master,
        whose output EMR copies to ``containers/<application>/<container ..._000001>/stderr.gz``;
        the step's own stderr names the application. Falls back to the step's stderr.
        """
        base = self.spec.key("logs", "emr", cluster_id)
        step_log = self._read_gz(f"{base}/steps/{step_id}/stderr.gz")
        apps = re.findall(r"application_\d+_\d+", step_log or "")
        candidates = []
        if apps:
            prefix = f"{base}/containers/{apps[-1]}/"
            keys = self._keys(prefix)
            candidates = [k for k in keys if re.search(r"container_.*_000001/stderr\.gz$", k)]
        for key in candidates:
            text = self._read_gz(key)
            if text is not None:
                return f"s3://{self.spec.bucket}/{key}", text.splitlines()[-lines:]
        if step_log is not None:
            uri = f"s3://{self.spec.bucket}/{base}/steps/{step_id}/stderr.gz"
            return uri, step_log.splitlines()[-lines:]
        return None

    def _keys(self, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.spec.bucket, Prefix=prefix, ExpectedBucketOwner=self.owner
        )
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def _read_gz(self, key: str) -> str | None:
        from botocore.exceptions import ClientError

        try:
            body = self.s3.get_object(
                Bucket=self.spec.bucket, Key=key, ExpectedBucketOwner=self.owner
            )["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "AccessDenied"):
                return None
            raise
        with contextlib.suppress(OSError):  # EMR gzips its logs; a plain file is taken as it is
            body = gzip.decompress(body)
        return body.decode("utf-8", errors="replace")

    def terminate(self, cluster_id: str) -> None:
        self._call("TerminateJobFlows", JobFlowIds=[cluster_id])

    # -- security configuration ---------------------------------------------------------------

    def create_security_configuration(
        self, kms_key_arn: str | None, tls_certificates: str | None = None
    ) -> str:
        """Create (or replace) the security configuration named in the spec."""
        name = self.spec.security_configuration or SECURITY_CONFIGURATION
        document = json.dumps(security_configuration(kms_key_arn, tls_certificates))
        if not self.dry_run:
            from botocore.exceptions import ClientError

            # configurations are immutable: a changed key means a new one
            with contextlib.suppress(ClientError):
                self.client.delete_security_configuration(Name=name)
        self._call("CreateSecurityConfiguration", Name=name, SecurityConfiguration=document)
        return name

    def delete_security_configuration(self) -> None:
        name = self.spec.security_configuration or SECURITY_CONFIGURATION
        self._call("DeleteSecurityConfiguration", Name=name)

    # -- EMR Studio notebook execution --------------------------------------------------------

    def start_notebook_execution(self, request: dict) -> str | None:
        response = self._call("StartNotebookExecution", **request)
        return response["NotebookExecutionId"] if response else None

    def wait_notebook_execution(
        self,
        execution_id: str,
        poll_s: float = 30,
        timeout_s: float = 6 * 3600,
        sleep: Callable[[float], None] | None = None,
    ) -> dict:
        """Poll ``DescribeNotebookExecution`` until a final state, FINISHED, FAILED or STOPPED
        (boto3 has no waiter for it); the execution as EMR describes it. One-line
        TimeoutError when it is still running after ``timeout_s``."""
        import time

        sleep = sleep or time.sleep
        deadline = time.monotonic() + timeout_s
        while True:
            execution = self.client.describe_notebook_execution(NotebookExecutionId=execution_id)[
                "NotebookExecution"
            ]
            if execution["Status"] in NOTEBOOK_EXECUTION_FINAL:
                return execution
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"notebook execution {execution_id} still {execution['Status']} after "
                    f"{timeout_s:.0f} s"
                )
            sleep(poll_s)


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")
