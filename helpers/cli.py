"""Command line: ``python -m helpers run|recognize|notebooks|predict|s3|emr|make-sample``.

Errors a user can fix (missing input, bad parameter, missing weights) print one line and
exit with status 2; no stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from helpers import config, defaults
from helpers.models import BACKBONES, WeightsNotFoundError

USER_ERRORS = (ValueError, FileNotFoundError, WeightsNotFoundError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m helpers", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the whole chain and write Parquet, figure and report")
    run.add_argument(
        "--input",
        default=config.default_input(),
        help="folder or URI of images, one folder per class (default: data_sample/)",
    )
    run.add_argument(
        "--output",
        default=config.default_output(),
        help="folder or URI for the results (default: output/)",
    )
    run.add_argument(
        "--model",
        default=defaults.MODEL_NAME,
        choices=sorted(BACKBONES),
        help="feature extractor (default: %(default)s)",
    )
    run.add_argument(
        "--weights",
        default=defaults.WEIGHTS,
        help="'imagenet' (search Keras cache, $FRUITS_MODELS_DIR, ../shared/models, "
        "then download), a weight file path/URI, or 'random' (tests only)",
    )
    run.add_argument(
        "--batch-size",
        type=int,
        default=defaults.BATCH_SIZE,
        help="images per model call (default: %(default)s)",
    )
    group = run.add_mutually_exclusive_group()
    group.add_argument(
        "--variance-threshold",
        type=float,
        default=defaults.VARIANCE_THRESHOLD,
        help="keep the fewest components explaining this share (default: %(default)s)",
    )
    group.add_argument("--k", type=int, default=None, help="keep exactly k components")
    run.add_argument(
        "--partitions",
        type=int,
        default=None,
        help="repartition the images into this many partitions (default: Spark's)",
    )
    run.add_argument(
        "--master", default=None, help="Spark master (default: local[*] or the cluster's)"
    )
    run.add_argument(
        "--incremental",
        action="store_true",
        help="featurize only new or changed images (path, size, mtime); reuse the rest",
    )
    run.add_argument(
        "--event-log-dir",
        default=None,
        help="write Spark event logs here (default: <output>/spark-events when local)",
    )

    recognize = sub.add_parser(
        "recognize",
        help="after run: train + evaluate the classifier, cluster, draw maps (as notebook 05)",
    )
    recognize.add_argument(
        "--output",
        default=config.default_output(),
        help="the folder or URI a run wrote features/ and reduced/ to (default: output/)",
    )
    recognize.add_argument(
        "--classifier", default=defaults.CLASSIFIER, choices=defaults.CLASSIFIERS
    )
    recognize.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.TEST_FRACTION,
        help="stratified test share when there are no Training/Test folders (default: %(default)s)",
    )
    recognize.add_argument(
        "--n-clusters", type=int, default=None, help="KMeans k (default: labels)"
    )
    recognize.add_argument(
        "--cluster-k-range",
        type=int,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="choose KMeans k in this range by silhouette",
    )
    recognize.add_argument("--master", default=None, help="Spark master")

    books = sub.add_parser(
        "notebooks", help="execute notebooks 01-05 headless with papermill (the main job)"
    )
    books.add_argument(
        "-f",
        "--parameters-file",
        default=None,
        help="YAML file of notebook parameters (e.g. INPUT_URI: s3://...)",
    )
    books.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="one parameter (YAML value), repeatable",
    )
    books.add_argument(
        "--output",
        default=None,
        help="OUTPUT_URI for all notebooks; executed copies go to <output>/notebooks",
    )
    books.add_argument(
        "--kernel", default=None, help="Jupyter kernel (default: the notebooks' own)"
    )
    books.add_argument(
        "--notebook-dir", default=None, help="folder holding the notebooks (default: notebooks/)"
    )

    predict = sub.add_parser(
        "predict", help="top labels for photos with a saved recognizer (no Spark)"
    )
    predict.add_argument("photos", nargs="+", help="photo files, folders of photos, or s3:// URIs")
    predict.add_argument(
        "--recognizer",
        default=None,
        help="folder or URI written by notebook 05 (default: output/recognizer)",
    )
    predict.add_argument(
        "--top",
        type=int,
        default=defaults.TOP_LABELS,
        help="labels per photo (default: %(default)s)",
    )
    predict.add_argument(
        "--weights", default=defaults.WEIGHTS, help="CNN weights, as for run (default: %(default)s)"
    )
    predict.add_argument("--json", action="store_true", help="one JSON object per line")

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
        if args.command == "run":
            return _run(args)
        if args.command == "notebooks":
            return _notebooks(args)
        if args.command == "recognize":
            return _recognize(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "emr":
            return _emr(args)
        if args.command == "s3":
            return _s3(args)
        if args.command == "make-sample":
            from helpers import sample_data

            written = sample_data.write_sample(args.output)
            print(f"wrote {len(written)} images under {args.output}")
            return 0
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a notebook that failed: its executed copy has the details
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 1


def _run(args: argparse.Namespace) -> int:
    from helpers import inputs
    from helpers.layout import RUN_REPORT, OutputLayout
    from helpers.pipeline import RunParams, run
    from helpers.spark_session import get_spark

    params = RunParams(
        input_uri=args.input,
        output_uri=args.output,
        model_name=args.model,
        weights=args.weights,
        batch_size=args.batch_size,
        variance_threshold=args.variance_threshold,
        k=args.k,
        num_partitions=args.partitions,
        incremental=args.incremental,
    ).validate()  # weights looked up here: a missing file fails before Spark starts
    event_logs = args.event_log_dir
    if event_logs is None:
        event_logs = OutputLayout(args.output).local_event_logs()
    spark = get_spark(args.master, event_log_dir=event_logs)
    try:
        result = run(params, spark)
    finally:
        spark.stop()
    summary = {
        "files": inputs.reconciliation_line(result.report["files"]),
        "images": result.report["images"]["total"],
        "featurized": result.report["images"]["featurized"],
        "failed": result.report["images"]["failed"],
        "k": result.report["pca"]["k"],
        "explained_variance": result.report["pca"]["explained_variance"],
        "images_per_s": result.report["throughput_images_per_s"],
        "report": result.uri(RUN_REPORT),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    import yaml

    from helpers.notebooks import run_notebooks

    parameters: dict = {}
    if args.parameters_file:
        with open(args.parameters_file, encoding="utf-8") as handle:
            parameters.update(yaml.safe_load(handle) or {})
    for name, value in args.parameter:
        parameters[name] = yaml.safe_load(value)
    kwargs = {"notebook_dir": Path(args.notebook_dir)} if args.notebook_dir else {}
    written = run_notebooks(parameters, output_uri=args.output, kernel_name=args.kernel, **kwargs)
    print("\n".join(written))
    return 0


def _recognize(args: argparse.Namespace) -> int:
    from helpers import storage
    from helpers.layout import RECOGNITION_REPORT
    from helpers.recognition import RecognitionParams, run_recognition
    from helpers.spark_session import get_spark

    params = RecognitionParams(
        args.output,
        classifier=args.classifier,
        test_fraction=args.test_fraction,
        n_clusters=args.n_clusters,
        cluster_k_range=tuple(args.cluster_k_range) if args.cluster_k_range else None,
    ).validate()
    spark = get_spark(args.master)
    try:
        result = run_recognition(params, spark)
    finally:
        spark.stop()
    scores = result.report
    summary = {
        "split": scores["split"],
        "accuracy": scores["classifier"]["accuracy"],
        "macro_f1": scores["classifier"]["macro_f1"],
        "clusters": scores["clustering"]["k"],
        "adjusted_rand_index": scores["clustering"]["adjusted_rand_index"],
        "report": storage.join(args.output, RECOGNITION_REPORT),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    """Answer every photo; exit 1 when some could not be read (each one says why)."""
    import os
    import time

    # TensorFlow's start-up chatter would bury the answers
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from helpers import storage
    from helpers.layout import RECOGNIZER
    from helpers.recognize import PhotoRecognizer

    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    uri = args.recognizer or storage.join(config.default_output(), RECOGNIZER)
    recognizer = PhotoRecognizer(uri, weights=args.weights)
    started = time.perf_counter()
    answers = recognizer.predict(args.photos, top=args.top)
    elapsed = time.perf_counter() - started
    for answer in answers:
        if args.json:
            print(json.dumps(answer.as_dict(), ensure_ascii=False))
        elif answer.error is not None:
            print(f"{answer.photo}: error: {answer.error}")
        else:
            best = ", ".join(f"{label} {p:.1%}" for label, p in answer.top)
            print(f"{answer.photo}: {best}")
    failed = sum(a.error is not None for a in answers)
    print(
        f"{len(answers) - failed} of {len(answers)} photos answered in {elapsed:.2f} s "
        f"({elapsed / max(len(answers), 1) * 1000:.0f} ms/photo; loading took "
        f"{recognizer.load_seconds:.1f} s)",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _emr(args: argparse.Namespace) -> int:
    from helpers import emr

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
    from helpers import s3_staging

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
