"""Tooling command line: ``python -m fruits_tools s3|emr|serverless|pack|make-sample``.

Errors a user can fix print one line and exit with status 2; AWS errors, a timeout or a failed
run exit with status 1 (a failed run after printing why); no stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import config, defaults

if TYPE_CHECKING:
    from collections.abc import Callable

    from fruits_tools.emr import ClusterSpec, Launcher, RunOutcome

    #: What a command does with the parsed options; what it returns is the exit status.
    Command = Callable[[argparse.Namespace], int]
    EmrCommand = Callable[[argparse.Namespace, ClusterSpec, Launcher], int]

#: emr actions that act on an existing cluster.
NEEDS_CLUSTER = ("submit", "status", "wait", "terminate", "notebooks-execution")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fruits_tools", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    s3 = sub.add_parser("s3", help="S3 staging: make-bucket, upload, download, ls")
    s3.add_argument("action", choices=list(S3_COMMANDS))
    s3.add_argument(
        "args",
        nargs="*",
        help="make-bucket BUCKET | upload DIR S3URI | download S3URI DIR | ls S3URI",
    )
    s3.add_argument(
        "--region", default=defaults.REGION, help="bucket region (default: %(default)s)"
    )
    s3.add_argument("--workers", type=int, default=defaults.S3_WORKERS, help="parallel transfers")
    s3.add_argument("--kms-key", default=None, help="make-bucket: SSE-KMS default with this key")
    s3.add_argument("--prefix", default="fruits", help="make-bucket: the project's prefix")
    s3.add_argument("--staging-days", type=int, default=7, help="expire output/_staging/ after")
    s3.add_argument("--log-days", type=int, default=30, help="expire logs/ after")
    s3.add_argument("--multipart-days", type=int, default=3, help="abort unfinished uploads after")
    s3.add_argument("--dry-run", action="store_true", help="make-bucket, upload: send nothing")

    emr = sub.add_parser(
        "emr", help="roles, stage, run (one-shot), create, submit, wait, teardown on AWS EMR"
    )
    emr.add_argument("action", choices=EMR_ACTIONS)
    emr.add_argument(
        "what", nargs="?", choices=["create", "delete", "check", "prepare"],
        help="roles, security-config, studio-role: create or delete; network: check or prepare",
    )  # fmt: skip
    emr.add_argument("--bucket", required=True, help="S3 bucket for input, code, output, logs")
    emr.add_argument("--prefix", default="fruits", help="prefix inside the bucket")
    emr.add_argument("--region", default=defaults.REGION, help="AWS region (default: %(default)s)")
    emr.add_argument("--dry-run", action="store_true", help="print the API requests, send nothing")
    emr.add_argument("--cluster-id", help="the cluster (submit, status, wait, terminate, ...)")
    emr.add_argument("--step-id", action="append", help="wait: these steps (default: all)")
    emr.add_argument("--wheel", help="the project's wheel to stage (pip wheel --no-deps -w dist .)")
    emr.add_argument("--wheelhouse", help="stage: a wheelhouse folder (default: build it, cached)")
    emr.add_argument(
        "--archive", default=None,
        help="stage: the environment archive made by pack (fruits-env.tar.gz), for clusters "
        "without the bootstrap; the wheelhouse is then not staged unless --wheelhouse is given",
    )  # fmt: skip
    emr.add_argument(
        "--environment", choices=["bootstrap", "archive"], default="bootstrap",
        help="run, submit: the Python the steps run in: the bootstrap's (the project's cluster) "
        "or the staged archive's (any EMR 7 cluster; cli mode)",
    )  # fmt: skip
    emr.add_argument("--weights", help="stage: the weights file (default: the local lookup)")
    emr.add_argument("--release", default=None, help="EMR release label")
    emr.add_argument("--core-count", type=int, default=2)
    emr.add_argument("--task-count", type=int, default=0, help="task nodes (spot by default)")
    emr.add_argument("--on-demand", action="store_true", help="task nodes on demand, not spot")
    emr.add_argument("--ebs-gb", type=int, default=64, help="gp3 volume per node (GB)")
    emr.add_argument(
        "--root-volume-gb", type=int, default=None,
        help="root volume per node (GB; default 20); the bootstrap needs 3 GB free on it",
    )  # fmt: skip
    emr.add_argument("--idle-timeout", type=int, default=3600, help="create: end after idle s")
    emr.add_argument(
        "--subnet-id", default=None,
        help="tagged for-use-with-amazon-emr-managed-policies=true (default: a tagged subnet of "
        "the region); emr network prepare tags it",
    )  # fmt: skip
    emr.add_argument(
        "--security-groups", default=None, metavar="PRIMARY,CORE",
        help="EMR-managed security groups, tagged (default: EMR's, made in the subnet's VPC)",
    )  # fmt: skip
    emr.add_argument(
        "--create-security-groups", action="store_true",
        help="network prepare: create tagged security groups instead of tagging the VPC",
    )  # fmt: skip
    emr.add_argument("--kms-key", default=None, help="KMS key ARN: S3, local disks, EBS")
    emr.add_argument("--tls-certificates", default=None, help="s3://.../certs.zip: TLS in transit")
    emr.add_argument(
        "--no-security-configuration", action="store_true", help="no encryption at rest"
    )
    emr.add_argument("--mode", choices=["cli", "notebooks"], default="cli", help="run, submit")
    emr.add_argument("--input", default=None, help="input URI (default s3://bucket/prefix/input)")
    emr.add_argument("--output", default=None, help="output URI (default .../prefix/output)")
    emr.add_argument(
        "--run-args",
        default="",
        help="run, submit: more arguments of the run step, as one string: helpers run's options "
        "(cli mode: '--runtime openvino --batch-size 64') or notebook parameters (notebooks "
        "mode: '-p AUGMENT_COPIES 1'); checked before anything is sent",
    )
    emr.add_argument(
        "--recognize-args",
        default="",
        help="run, submit (cli mode): more arguments of the recognition step "
        "('--classifier logistic_regression --backgrounds s3://...')",
    )
    emr.add_argument("--wait", action="store_true", help="submit: wait for the steps to end")
    emr.add_argument("--no-wait", action="store_true", help="run, notebooks-execution: return")
    emr.add_argument("--hours", type=float, default=1.0, help="cost: expected hours of the run")
    emr.add_argument("--poll", type=float, default=30.0, help="seconds between status requests")
    emr.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait at most")
    emr.add_argument("--notebook", help="notebooks-execution: e.g. 03_pca")
    emr.add_argument("--params", default="{}", help="notebooks-execution: parameters as JSON")
    emr.add_argument("--studio-role", default=None, help="notebooks-execution: Studio's role")
    emr.add_argument("--yes", action="store_true", help="teardown: do not ask")

    packer = sub.add_parser(
        "pack", help="the environment archive for a cluster without the bootstrap (venv-pack)"
    )
    packer.add_argument("--wheel", required=True, help="the project's wheel (pip wheel --no-deps)")
    packer.add_argument("--wheelhouse", help="a wheelhouse folder (default: build it, cached)")
    packer.add_argument(
        "--python", default="python3.11",
        help="the Python 3.11 the venv is built from here (default: %(default)s)",
    )  # fmt: skip
    packer.add_argument(
        "--python-prefix", default="/usr",
        help="where the nodes have bin/python3.11 (default %(default)s: EMR 7.x on EC2)",
    )  # fmt: skip
    packer.add_argument("--output", default="dist/fruits-env.tar.gz", help="the archive to write")

    serverless = sub.add_parser(
        "serverless", help="EMR Serverless: an application, the chain as job runs (the archive)"
    )
    serverless.add_argument("action", choices=list(SERVERLESS_COMMANDS))
    serverless.add_argument("--bucket", required=True, help="S3 bucket of input, code, output")
    serverless.add_argument("--prefix", default="fruits", help="prefix inside the bucket")
    serverless.add_argument("--region", default=defaults.REGION, help="default: %(default)s")
    serverless.add_argument("--role-arn", help="the job runs' runtime role (serverless policy)")
    serverless.add_argument("--application-id", help="an application to use (default: create)")
    serverless.add_argument("--image-uri", help="create: the custom image (emr/serverless/)")
    serverless.add_argument("--release", default=None, help="create: an emr-7.x release")
    serverless.add_argument("--max-vcpu", type=int, default=32, help="create: maximum vCPUs")
    serverless.add_argument("--max-memory-gb", type=int, default=128, help="create: maximum GB")
    serverless.add_argument("--input", default=None, help="input URI (default .../input)")
    serverless.add_argument("--output", default=None, help="output URI (default .../output)")
    serverless.add_argument("--run-args", default="", help="more arguments of helpers run")
    serverless.add_argument("--recognize-args", default="", help="more arguments of recognize")
    serverless.add_argument("--job-run-id", help="wait: the job run")
    serverless.add_argument("--images", type=int, default=90_000, help="cost: images to price")
    serverless.add_argument("--rate", type=float, default=32.3,
                            help="cost: images/s per vCPU (benchmarks/sizing.py's r)")  # fmt: skip
    serverless.add_argument("--workers", type=int, default=8, help="cost: executors of 4 vCPU")
    serverless.add_argument("--no-wait", action="store_true", help="run: return once started")
    serverless.add_argument("--poll", type=float, default=30.0, help="seconds between requests")
    serverless.add_argument("--timeout", type=float, default=6 * 3600, help="seconds at most")
    serverless.add_argument("--dry-run", action="store_true", help="print requests, send none")

    sample = sub.add_parser("make-sample", help="regenerate data_sample/ (deterministic)")
    sample.add_argument("--output", default=config.default_input(), help="target folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the project at INFO, libraries (botocore's credential chatter) at WARNING
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("fruits_tools", "helpers"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(err, (BotoCoreError, ClientError)):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise


def _make_sample(args: argparse.Namespace) -> int:
    from fruits_tools import sample_data

    written = sample_data.write_sample(args.output)
    print(f"wrote {len(written)} images under {args.output}")
    return 0


# -- emr ---------------------------------------------------------------------------------------


def _emr(args: argparse.Namespace) -> int:
    from fruits_tools import emr

    spec = _cluster_spec(args)
    launcher = emr.Launcher(spec, dry_run=args.dry_run)
    if args.action in NEEDS_CLUSTER and not args.cluster_id and not args.dry_run:
        raise ValueError(f"emr {args.action} needs --cluster-id")
    if args.action in ("roles", "security-config", "studio-role") and args.what not in (
        "create",
        "delete",
    ):
        raise ValueError(f"emr {args.action} needs create or delete")
    if args.action == "network" and args.what not in ("check", "prepare"):
        raise ValueError("emr network needs check or prepare")
    return EMR_COMMANDS[args.action](args, spec, launcher)


def _cluster_spec(args: argparse.Namespace) -> ClusterSpec:
    from fruits_tools import emr

    return emr.ClusterSpec(
        bucket=args.bucket,
        prefix=args.prefix,
        region=args.region,
        core_count=args.core_count,
        task_count=args.task_count,
        task_spot=not args.on_demand,
        ebs_gb=args.ebs_gb,
        idle_timeout_s=args.idle_timeout,
        subnet_id=args.subnet_id,
        security_groups=_security_groups(args.security_groups),
        kms_key_arn=args.kms_key,
        **({"security_configuration": None} if args.no_security_configuration else {}),
        **({"release": args.release} if args.release else {}),
        **({"root_volume_gb": args.root_volume_gb} if args.root_volume_gb else {}),
        **({"wheel_name": Path(args.wheel).name} if args.wheel else {}),
    )


def _security_groups(text: str | None) -> tuple[str, str] | None:
    if not text:
        return None
    groups = tuple(g.strip() for g in text.split(",") if g.strip())
    if len(groups) != 2:
        raise ValueError(f"--security-groups takes PRIMARY,CORE: got {text!r}")
    return groups  # type: ignore[return-value]


def _cluster_id(args: argparse.Namespace) -> str:
    """``--cluster-id``; a placeholder in a dry run, which may go without."""
    return args.cluster_id or "j-DRYRUN"


def _wait_options(args: argparse.Namespace) -> dict:
    return {"poll_s": args.poll, "timeout_s": args.timeout}


def _emr_policy(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    from fruits_tools import emr

    print(json.dumps(emr.render_policy(spec), indent=2))
    return 0


def _emr_network(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    """``check``: the subnet (given or found), its VPC and the security groups carry the tags
    AmazonEMRServicePolicy_v2 needs; ``prepare``: add them, or create tagged groups."""
    from fruits_tools import network

    subnet = spec.subnet_id
    if args.what == "prepare":
        if not subnet:
            raise ValueError("emr network prepare needs --subnet-id")
        if args.dry_run:
            print(json.dumps({"prepare": subnet, "create_security_groups":
                              args.create_security_groups}))  # fmt: skip
            return 0
        print(json.dumps(network.prepare(launcher.ec2, subnet, args.create_security_groups)))
        return 0
    subnet = subnet or network.find_subnet(launcher.ec2, spec.region)
    found = network.check(launcher.ec2, subnet, tuple(spec.security_groups or ()))
    print(json.dumps({"subnet": subnet, "vpc": found.vpc["VpcId"], "ok": True}))
    return 0


def _emr_cost(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    from fruits_tools import emr

    print(emr.estimate_cost(spec, args.hours)["line"])
    return 0


def _emr_roles(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    """The nodes' role and instance profile, and EMR's service role."""
    from fruits_tools import iam

    return _iam_roles(args, spec, iam.create_requests, iam.delete_requests)


def _emr_studio_role(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    """EMR Studio's service role for ``notebooks-execution`` (emr/iam/studio-policy.json)."""
    from fruits_tools import iam

    _iam_roles(args, spec, iam.studio_requests, iam.studio_delete_requests)
    if args.what == "create" and not args.dry_run:
        print(json.dumps({"studio_role": f"arn:aws:iam::{_account(args)}:role/{iam.STUDIO_ROLE}"}))
    return 0


def _iam_roles(args: argparse.Namespace, spec: ClusterSpec, create, delete) -> int:
    """Send (or with --dry-run print) the IAM requests that create or delete roles."""
    from fruits_tools import iam

    if args.what == "create":
        requests = create(spec.bucket, spec.prefix, _account(args), spec.region, spec.kms_key_arn)
    else:
        requests = delete()
    if args.dry_run:
        for operation, params in requests:
            print(json.dumps({"operation": operation, "params": params}, indent=2))
        return 0
    import boto3

    iam.apply(
        requests, boto3.client("iam", region_name=spec.region), creating=args.what == "create"
    )
    return 0


def _emr_security_config(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    if args.what == "create":
        name = launcher.create_security_configuration(args.kms_key, args.tls_certificates)
        print(f"security configuration {name}")
    else:
        launcher.delete_security_configuration()
    return 0


def _emr_configure(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    """The %%configure cell that gives an EMR Studio session the staged archive."""
    from fruits_tools import emr

    print(emr.studio_configure_cell(spec))
    return 0


def _emr_stage(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    if not args.wheel:
        raise ValueError("emr stage needs --wheel (build it with: pip wheel --no-deps -w dist .)")
    archive = Path(args.archive) if args.archive else None
    weights = _weights(args)
    # a cluster without the bootstrap never reads the wheelhouse: the archive holds it all
    wheelhouse = _wheelhouse(args) if archive is None or args.wheelhouse else None
    for uri in launcher.stage(Path(args.wheel), wheelhouse, weights, _jars(), archive=archive):
        print(uri)
    return 0


def _pack(args: argparse.Namespace) -> int:
    from fruits_tools import pack, wheelhouse

    pack.check_platform()
    if args.wheelhouse:
        wheels = Path(args.wheelhouse)
    else:
        print("pack: the wheelhouse (built once, cached)", file=sys.stderr)
        wheels = wheelhouse.build()
    echo = lambda line: print(line, file=sys.stderr)  # noqa: E731
    packed = pack.build(Path(args.wheel), wheels, Path(args.output), args.python,
                        args.python_prefix, echo=echo)  # fmt: skip
    print(packed.line())
    print(f"next: python -m fruits_tools emr stage --wheel {args.wheel} --archive {args.output} "
          "--bucket ...")  # fmt: skip
    return 0


def _emr_run(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    """A one-shot cluster that runs the chain's steps and ends; waits for it unless told not."""
    steps = _steps(args, spec, launcher)
    _before_launch(args, spec, launcher)
    created = launcher.create(steps)
    if not created:
        return 0
    print(json.dumps({"cluster_id": created}), flush=True)
    if args.no_wait:
        return 0
    outcome = launcher.wait(created, None, until_terminated=True, **_wait_options(args))
    return _outcome(launcher, outcome)


def _emr_create(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    _before_launch(args, spec, launcher)
    created = launcher.create()
    if created:
        print(json.dumps({"cluster_id": created, **launcher.status(created)}, indent=2))
    return 0


def _before_launch(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> None:
    """Refuse a launch that could only fail (see ``Launcher.preflight``); say what it costs."""
    from fruits_tools import emr

    if not args.dry_run:
        launcher.preflight()
    print(emr.estimate_cost(spec, args.hours)["line"], file=sys.stderr)


def _emr_submit(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    cluster_id = _cluster_id(args)
    step_ids = launcher.submit(cluster_id, _steps(args, spec, launcher))
    if not step_ids:
        return 0
    print(json.dumps({"cluster_id": cluster_id, "step_ids": step_ids}, indent=2))
    if args.wait:
        return _outcome(launcher, launcher.wait(cluster_id, step_ids, **_wait_options(args)))
    return 0


def _emr_status(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    result = launcher.status(_cluster_id(args))
    if result:
        print(json.dumps(result, indent=2))
    return 0


def _emr_wait(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    if args.dry_run:  # nothing was sent, so nothing to wait for
        return 0
    outcome = launcher.wait(_cluster_id(args), args.step_id, **_wait_options(args))
    return _outcome(launcher, outcome)


def _emr_terminate(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    launcher.terminate(_cluster_id(args))
    return 0


def _outcome(launcher: Launcher, outcome: RunOutcome) -> int:
    """Print how the run ended; 0 only when every step completed and the cluster had no error."""
    print(json.dumps(outcome.summary(), indent=2))
    for line in launcher.report(outcome):
        print(line, file=sys.stderr)
    return 0 if outcome.ok else 1


def _account(args: argparse.Namespace) -> str:
    from fruits_tools import s3_staging

    if args.dry_run:
        try:
            return s3_staging.account_id(args.region)
        except Exception:  # a dry run needs no credentials
            return "ACCOUNT_ID"
    return s3_staging.account_id(args.region)


def _weights(args: argparse.Namespace) -> Path | None:
    """The weights file to stage: ``--weights`` or the local lookup (never a download)."""
    if args.weights:
        if not Path(args.weights).is_file():
            raise FileNotFoundError(f"weights file not found: {args.weights}")
        return Path(args.weights)
    from helpers.core.backbones import get_backbone
    from helpers.core.recipe import WeightsNotFoundError, resolve_weights

    try:
        return Path(resolve_weights(get_backbone(defaults.MODEL_NAME), "imagenet", download=False))
    except WeightsNotFoundError as err:
        if args.dry_run:
            print(f"(weights not found locally: {str(err).splitlines()[0]})", file=sys.stderr)
            return None
        raise ValueError(str(err).splitlines()[0] + " (pass --weights FILE)") from None


def _steps(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> list[dict]:
    """The chain's steps for ``emr run`` and ``emr submit``."""
    from fruits_tools import emr

    return emr.pipeline_steps(
        spec,
        args.input,
        args.output,
        args.mode,
        extra_args=shlex.split(args.run_args),
        jars=_staged(launcher),
        recognize_args=shlex.split(args.recognize_args),
        environment=args.environment,
    )


def _jars() -> list[Path]:
    """The jars to stage: sparkMeasure's build for EMR 7's Spark (Scala 2.12), from ``make
    jars``'s cache; without it the steps run and their reports say the metrics are missing."""
    jar = config.cached_sparkmeasure_jar("2.12")
    if jar is None:
        print(
            "(sparkMeasure's jar for Scala 2.12 not found: run make jars to stage it; "
            "without it EMR runs report no stage metrics)",
            file=sys.stderr,
        )
    return [jar] if jar else []


def _staged(launcher: Launcher) -> list[str]:
    """The staged jars the steps load (in a dry run: those ``stage`` would upload from here)."""
    if launcher.dry_run:
        return [launcher.spec.uri("code", "jars", jar.name) for jar in _jars()]
    return launcher.staged_jars()


def _wheelhouse(args: argparse.Namespace) -> Path | None:
    if args.wheelhouse:
        # the bootstrap installs from the hash locks (fruits_tools.wheelhouse writes them)
        for name in ("requirements.lock", "requirements-primary.lock"):
            if not (Path(args.wheelhouse) / name).is_file():
                raise FileNotFoundError(f"no {name} in wheelhouse {args.wheelhouse}")
        return Path(args.wheelhouse)
    if args.dry_run:
        print("(wheelhouse: built with pip download when not a dry run)", file=sys.stderr)
        return None
    from fruits_tools import wheelhouse

    return wheelhouse.build()


def _emr_notebooks_execution(
    args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher
) -> int:
    """Run a staged notebook with EMR Studio's engine on the cluster; wait unless told not."""
    from fruits_tools import emr

    cluster_id = _cluster_id(args)
    if not args.notebook:
        raise ValueError("emr notebooks-execution needs --notebook (e.g. 03_pca)")
    if not args.studio_role:
        raise ValueError("emr notebooks-execution needs --studio-role (EMR Studio's role)")
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as err:
        raise ValueError(f"--params is not JSON: {err}") from None
    if not isinstance(params, dict):
        raise ValueError("--params must be a JSON object, e.g. '{\"K\": 50}'")
    request = emr.notebook_execution_request(
        spec, cluster_id, args.notebook, params, args.studio_role
    )
    execution_id = launcher.start_notebook_execution(request)
    if not execution_id:
        return 0
    print(json.dumps({"notebook_execution_id": execution_id}), flush=True)
    if args.no_wait:
        return 0
    execution = launcher.wait_notebook_execution(execution_id, args.poll, args.timeout)
    print(json.dumps({k: execution.get(k) for k in (
        "NotebookExecutionId", "Status", "LastStateChangeReason", "OutputNotebookURI")},
        indent=2, default=str))  # fmt: skip
    return 0 if execution["Status"] == "FINISHED" else 1


def _emr_teardown(args: argparse.Namespace, spec: ClusterSpec, launcher: Launcher) -> int:
    """Remove what ``stage``, ``roles create`` and ``security-config create`` made; input,
    output and logs stay."""
    from fruits_tools import iam, s3_staging

    code = spec.uri("code") + "/"
    what = (
        f"delete everything under {code}, the roles {iam.INSTANCE_ROLE} and {iam.SERVICE_ROLE}, "
        f"the instance profile {iam.INSTANCE_ROLE}"
        + (
            f" and the security configuration {spec.security_configuration}"
            if spec.security_configuration
            else ""
        )  # fmt: skip
    )
    if args.dry_run:
        print(f"would {what}")
        for operation, params in iam.delete_requests():
            print(json.dumps({"operation": operation, "params": params}))
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise ValueError(f"teardown would {what}: pass --yes to confirm")
        if input(f"{what}? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    import boto3

    owner = launcher.owner
    keys = [o["key"] for o in s3_staging.list_prefix(code, launcher.s3, owner)]
    for start in range(0, len(keys), 1000):  # DeleteObjects takes 1,000 keys at most
        launcher.s3.delete_objects(
            Bucket=spec.bucket, ExpectedBucketOwner=owner,
            Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True},
        )  # fmt: skip
    print(f"deleted {len(keys)} objects under {code}")
    iam.delete_roles(boto3.client("iam", region_name=spec.region))
    if spec.security_configuration:
        from botocore.exceptions import ClientError

        try:
            launcher.delete_security_configuration()
            print(f"deleted security configuration {spec.security_configuration}")
        except ClientError as err:
            print(f"security configuration: {err}")
    return 0


#: ``emr ACTION``: what each action does, in the order ``--help`` lists them.
EMR_COMMANDS: dict[str, EmrCommand] = {
    "run": _emr_run,
    "roles": _emr_roles,
    "security-config": _emr_security_config,
    "network": _emr_network,
    "studio-role": _emr_studio_role,
    "stage": _emr_stage,
    "configure": _emr_configure,
    "create": _emr_create,
    "submit": _emr_submit,
    "status": _emr_status,
    "wait": _emr_wait,
    "terminate": _emr_terminate,
    "policy": _emr_policy,
    "cost": _emr_cost,
    "notebooks-execution": _emr_notebooks_execution,
    "teardown": _emr_teardown,
}
EMR_ACTIONS = list(EMR_COMMANDS)


# -- EMR Serverless ----------------------------------------------------------------------------


def _serverless(args: argparse.Namespace) -> int:
    from fruits_tools import serverless

    if args.action == "run" and not args.role_arn:
        raise ValueError("serverless run needs --role-arn (the job runs' runtime role)")
    spec = serverless.ServerlessSpec(
        bucket=args.bucket, prefix=args.prefix, region=args.region, role_arn=args.role_arn or "",
        image_uri=args.image_uri, max_vcpu=args.max_vcpu, max_memory_gb=args.max_memory_gb,
        **({"release": args.release} if args.release else {}),
    )  # fmt: skip
    service = serverless.Serverless(spec, dry_run=args.dry_run)
    return SERVERLESS_COMMANDS[args.action](args, spec, service)


def _serverless_app(args, spec, service) -> int:
    app_id = service.application(args.application_id, poll_s=min(args.poll, 10))
    print(json.dumps({"application_id": app_id}))
    return 0


def _serverless_run(args, spec, service) -> int:
    """The chain as two job runs, one after the other; waits for each unless told not."""
    from fruits_tools import serverless

    app_id = service.application(args.application_id, poll_s=min(args.poll, 10))
    jars = [spec.uri("code", "jars", jar.name) for jar in _jars()]
    requests = serverless.chain_requests(
        spec, app_id, args.input, args.output, shlex.split(args.run_args),
        shlex.split(args.recognize_args), jars,
    )  # fmt: skip
    finished = []
    for request in requests if not args.no_wait else requests[:1]:
        run_id = service.start(request)
        if run_id is None:
            continue
        print(json.dumps({"application_id": app_id, "job_run_id": run_id,
                          "name": request["name"]}), flush=True)  # fmt: skip
        if args.no_wait:
            return 0
        run = service.wait(app_id, run_id, args.poll, args.timeout)
        finished.append(run)
        for line in service.report(app_id, run):
            print(line, file=sys.stderr)
        if run["state"] != "SUCCESS":
            break
    if finished:
        _print_cost(lambda: serverless.job_cost(finished, spec.region))
    return 0 if all(r["state"] == "SUCCESS" for r in finished) else 1


def _serverless_wait(args, spec, service) -> int:
    if not (args.application_id and args.job_run_id):
        raise ValueError("serverless wait needs --application-id and --job-run-id")
    run = service.wait(args.application_id, args.job_run_id, args.poll, args.timeout)
    for line in service.report(args.application_id, run):
        print(line, file=sys.stderr)
    return 0 if run["state"] == "SUCCESS" else 1


def _serverless_cost(args, spec, service) -> int:
    """What a run of ``--images`` would cost, before it runs."""
    from fruits_tools import serverless

    found = serverless.estimate(args.images, args.rate, 45.0, spec.region, args.workers)
    print(f"{args.images:,} images on {args.workers} workers of 4 vCPU: about "
          f"{found['wall_s'] / 60:.0f} min; {found['line']}")  # fmt: skip
    return 0


def _serverless_policy(args, spec, service) -> int:
    from fruits_tools import iam

    print(json.dumps(iam.serverless_job_policy(spec.bucket, spec.prefix), indent=2))
    return 0


def _print_cost(compute) -> None:
    """The cost line, or why there is none: a missing price never fails a finished run."""
    try:
        print(compute()["line"], file=sys.stderr)
    except ValueError as err:
        print(f"(no cost line: {err})", file=sys.stderr)


SERVERLESS_COMMANDS = {
    "app": _serverless_app,
    "run": _serverless_run,
    "wait": _serverless_wait,
    "cost": _serverless_cost,
    "policy": _serverless_policy,
}


# -- s3 ----------------------------------------------------------------------------------------


def _s3(args: argparse.Namespace) -> int:
    wanted, command = S3_COMMANDS[args.action]
    if len(args.args) != wanted:
        raise ValueError(f"s3 {args.action} takes {wanted} argument(s), got {len(args.args)}")
    return command(args)


def _s3_make_bucket(args: argparse.Namespace) -> int:
    from fruits_tools import s3_staging

    options = {
        "kms_key_arn": args.kms_key, "prefix": args.prefix, "multipart_days": args.multipart_days,
        "staging_days": args.staging_days, "log_days": args.log_days,
    }  # fmt: skip
    if args.dry_run:
        for operation, params in s3_staging.planned_requests(args.args[0], args.region, **options):
            print(json.dumps({"operation": operation, "params": params}, indent=2))
        return 0
    owner = s3_staging.account_id(args.region)  # ExpectedBucketOwner of every request
    settings = s3_staging.ensure_bucket(args.args[0], args.region, expected_owner=owner, **options)
    print(json.dumps(settings, indent=2, default=str))
    return 0


def _s3_upload(args: argparse.Namespace) -> int:
    from fruits_tools import s3_staging

    root, target = Path(args.args[0]), args.args[1]
    if not root.is_dir():
        raise FileNotFoundError(f"no folder at {args.args[0]}")
    if args.dry_run:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            print(f"upload {path} -> {target.rstrip('/')}/{path.relative_to(root).as_posix()}")
        return 0
    owner = s3_staging.account_id(args.region)
    print(
        s3_staging.upload_folder(args.args[0], target, workers=args.workers, expected_owner=owner)
    )
    return 0


def _s3_download(args: argparse.Namespace) -> int:
    from fruits_tools import s3_staging

    owner = s3_staging.account_id(args.region)
    print(
        s3_staging.download_prefix(
            args.args[0], args.args[1], workers=args.workers, expected_owner=owner
        )
    )
    return 0


def _s3_ls(args: argparse.Namespace) -> int:
    from fruits_tools import s3_staging

    owner = s3_staging.account_id(args.region)
    objects = s3_staging.list_prefix(args.args[0], expected_owner=owner)
    for obj in objects:
        print(f"{obj['size']:>12,}  {obj['key']}")
    print(f"{len(objects)} objects, {sum(o['size'] for o in objects):,} bytes")
    return 0


#: ``s3 ACTION``: how many arguments it takes and what it does.
S3_COMMANDS: dict[str, tuple[int, Command]] = {
    "make-bucket": (1, _s3_make_bucket),
    "upload": (2, _s3_upload),
    "download": (2, _s3_download),
    "ls": (1, _s3_ls),
}

#: The command line's commands.
COMMANDS: dict[str, Command] = {
    "emr": _emr, "s3": _s3, "pack": _pack, "serverless": _serverless,
    "make-sample": _make_sample,
}  # fmt: skip
