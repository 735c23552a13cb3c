"""Tooling command line: ``python -m fruits_tools s3|emr|make-sample``.

Errors a user can fix print one line and exit with status 2; no stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from helpers import config, defaults


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fruits_tools", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    s3 = sub.add_parser("s3", help="S3 staging: make-bucket, upload, download, ls")
    s3.add_argument("action", choices=["make-bucket", "upload", "download", "ls"])
    s3.add_argument(
        "args",
        nargs="*",
        help="make-bucket BUCKET | upload DIR S3URI | download S3URI DIR | ls S3URI",
    )
    s3.add_argument(
        "--region", default=defaults.REGION, help="bucket region (default: %(default)s)"
    )
    s3.add_argument("--workers", type=int, default=defaults.S3_WORKERS, help="parallel transfers")

    emr = sub.add_parser("emr", help="stage, create, submit, watch and terminate an EMR cluster")
    emr.add_argument(
        "action", choices=["stage", "create", "submit", "status", "wait", "terminate", "policy"]
    )
    emr.add_argument("--bucket", required=True, help="S3 bucket for input, code, output, logs")
    emr.add_argument("--prefix", default="fruits", help="prefix inside the bucket")
    emr.add_argument("--region", default=defaults.REGION, help="AWS region (default: %(default)s)")
    emr.add_argument("--dry-run", action="store_true", help="print the API requests, send nothing")
    emr.add_argument("--cluster-id", help="the cluster (submit, status, wait, terminate)")
    emr.add_argument("--wheel", help="the project's wheel to stage (pip wheel --no-deps -w dist .)")
    emr.add_argument("--release", default=None, help="EMR release label")
    emr.add_argument("--core-count", type=int, default=2)
    emr.add_argument("--task-count", type=int, default=0, help="task nodes (spot by default)")
    emr.add_argument("--on-demand", action="store_true", help="task nodes on demand, not spot")
    emr.add_argument("--idle-timeout", type=int, default=3600, help="auto-terminate after idle s")
    emr.add_argument("--subnet-id", default=None)
    emr.add_argument("--mode", choices=["cli", "notebooks"], default="cli", help="submit: how")
    emr.add_argument("--input", default=None, help="input URI (default s3://bucket/prefix/input)")
    emr.add_argument("--output", default=None, help="output URI (default .../prefix/output)")
    emr.add_argument("--wait", action="store_true", help="submit: wait for the steps to end")

    sample = sub.add_parser("make-sample", help="regenerate data_sample/ (deterministic)")
    sample.add_argument("--output", default=config.default_input(), help="target folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "emr":
            return _emr(args)
        if args.command == "s3":
            return _s3(args)
        if args.command == "make-sample":
            from fruits_tools import sample_data

            written = sample_data.write_sample(args.output)
            print(f"wrote {len(written)} images under {args.output}")
            return 0
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1


def _emr(args: argparse.Namespace) -> int:
    from fruits_tools import emr

    spec = emr.ClusterSpec(
        bucket=args.bucket,
        prefix=args.prefix,
        region=args.region,
        core_count=args.core_count,
        task_count=args.task_count,
        task_spot=not args.on_demand,
        idle_timeout_s=args.idle_timeout,
        subnet_id=args.subnet_id,
        **({"release": args.release} if args.release else {}),
        **({"wheel_name": Path(args.wheel).name} if args.wheel else {}),
    )
    launcher = emr.Launcher(spec, dry_run=args.dry_run)
    needs_cluster = args.action in ("submit", "status", "wait", "terminate")
    if needs_cluster and not args.cluster_id and not args.dry_run:
        raise ValueError(f"emr {args.action} needs --cluster-id")
    cluster_id = args.cluster_id or "j-DRYRUN"
    if args.action == "policy":
        print(json.dumps(emr.render_policy(spec), indent=2))
    elif args.action == "stage":
        if not args.wheel:
            raise ValueError(
                "emr stage needs --wheel (build it with: pip wheel --no-deps -w dist .)"
            )
        for uri in launcher.stage(Path(args.wheel)):
            print(uri)
    elif args.action == "create":
        created = launcher.create()
        if created:
            print(json.dumps({"cluster_id": created, **launcher.status(created)}, indent=2))
    elif args.action == "submit":
        steps = emr.pipeline_steps(spec, args.input, args.output, args.mode)
        step_ids = launcher.submit(cluster_id, steps)
        if step_ids:
            print(json.dumps({"cluster_id": cluster_id, "step_ids": step_ids}, indent=2))
            if args.wait:
                print(json.dumps(launcher.wait(cluster_id, step_ids), indent=2))
    elif args.action in ("status", "wait"):
        result = (
            launcher.status(cluster_id)
            if args.action == "status"
            else launcher.wait(cluster_id, [])
        )
        if result:
            print(json.dumps(result, indent=2))
    elif args.action == "terminate":
        launcher.terminate(cluster_id)
    return 0


def _s3(args: argparse.Namespace) -> int:
    from fruits_tools import s3_staging

    wanted = {"make-bucket": 1, "upload": 2, "download": 2, "ls": 1}[args.action]
    if len(args.args) != wanted:
        raise ValueError(f"s3 {args.action} takes {wanted} argument(s), got {len(args.args)}")
    if args.action == "make-bucket":
        print(json.dumps(s3_staging.ensure_bucket(args.args[0], args.region), indent=2))
    elif args.action == "upload":
        print(s3_staging.upload_folder(args.args[0], args.args[1], workers=args.workers))
    elif args.action == "download":
        print(s3_staging.download_prefix(args.args[0], args.args[1], workers=args.workers))
    else:
        objects = s3_staging.list_prefix(args.args[0])
        for obj in objects:
            print(f"{obj['size']:>12,}  {obj['key']}")
        print(f"{len(objects)} objects, {sum(o['size'] for o in objects):,} bytes")
    return 0
