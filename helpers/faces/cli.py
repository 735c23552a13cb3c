"""Command line: ``python -m helpers run|recognize|notebooks|predict``.

The tooling (EMR launcher, S3 staging, sample maker) is ``python -m fruits_tools``.

Errors a user can fix (missing input, bad parameter, missing weights) print one line and
exit with status 2; no stack trace.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from helpers import config
from helpers.core.recipe import WeightsNotFoundError
from helpers.faces.args import build_parser

USER_ERRORS = (ValueError, FileNotFoundError, WeightsNotFoundError)


def main(argv: list[str] | None = None) -> int:
    from helpers.observe import logs

    # before anything imports TensorFlow, here or in the processes this one starts
    logs.quiet_tensorflow()
    args = build_parser().parse_args(argv)
    # The project's own progress at INFO; other libraries' warnings (a run adds a log file)
    logs.setup_logging()
    try:
        if args.command == "run":
            return _run(args)
        if args.command == "notebooks":
            return _notebooks(args)
        if args.command == "recognize":
            return _recognize(args)
        if args.command == "predict":
            return _predict(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a notebook that failed: its executed copy has the details
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 1


def _step_session(args: argparse.Namespace, name: str, **spark_options):
    """The Spark session of a chain step (``run``, ``recognize``): everything, libraries' INFO
    lines and Spark's included, in ``<output>/logs/<name>-*.log`` for support (local outputs),
    and no console bar of task counts (a step's stderr is a log, not a terminal)."""
    from helpers.observe import logs
    from helpers.spark.session import get_spark

    log_file = logs.log_file(args.output, name)
    logs.setup_logging(log_file)
    if log_file is not None:
        logging.getLogger(__name__).info("full log: %s", log_file)
    conf = {"spark.ui.showConsoleProgress": "false"}
    return get_spark(args.master, conf=conf, log_file=log_file, **spark_options)


def _run(args: argparse.Namespace) -> int:
    from helpers.core import inputs
    from helpers.layout import PCA_REPORT, RUN_REPORT, OutputLayout
    from helpers.spark.session import stop_if_owned
    from helpers.steps.extraction import RunParams, run

    params = RunParams(
        input_uri=args.input,
        output_uri=args.output,
        model_name=args.model,
        weights=args.weights,
        batch_size=args.batch_size,
        input_size=args.input_size,
        runtime=args.runtime,
        precision=args.precision,
        variance_threshold=args.variance_threshold,
        k=args.k,
        num_partitions=args.partitions,
        incremental=args.incremental,
    ).validate()  # weights looked up here: a missing file fails before Spark starts
    event_logs = args.event_log_dir
    if event_logs is None:
        event_logs = OutputLayout(args.output).local_event_logs()
    # the progress line (--progress) replaces Spark's console bar of task counts
    spark = _step_session(args, "run", event_log_dir=event_logs)
    try:
        result = run(params, spark, progress=args.progress)
    finally:
        stop_if_owned(spark)
    summary = {
        "files": inputs.reconciliation_line(result.report["files"]),
        "images": result.report["images"]["total"],
        "featurized": result.report["images"]["featurized"],
        "failed": result.report["images"]["failed"],
        "k": result.pca_report["pca"]["k"],
        "explained_variance": result.pca_report["pca"]["explained_variance"],
        "images_per_s": result.report["throughput_images_per_s"],
        "seconds": result.seconds,
        "report": result.uri(RUN_REPORT),
        "pca_report": result.uri(PCA_REPORT),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _notebooks(args: argparse.Namespace) -> int:
    import yaml

    from helpers.faces.notebooks import run_notebooks

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
    from helpers.steps.recognition import RecognitionParams, run_recognition

    params = RecognitionParams(
        args.output,
        classifier=args.classifier,
        test_fraction=args.test_fraction,
        augment_copies=args.augment_copies,
        backgrounds=args.backgrounds,
        held_out_backgrounds=args.held_out_backgrounds,
        weights=args.weights,
        n_clusters=args.n_clusters,
        cluster_k_range=tuple(args.cluster_k_range) if args.cluster_k_range else None,
    ).validate()
    spark = _step_session(args, "recognize")
    try:
        result = run_recognition(params, spark)
    finally:
        spark.stop()
    scores = result.report
    summary = {
        "split": scores["split"],
        "classifier": scores["classifier"]["classifier"],
        "accuracy": scores["classifier"]["accuracy"],
        "macro_f1": scores["classifier"]["macro_f1"],
        "cluttered_top1": scores["cluttered"]["top1"],
        "cluttered_top3": scores["cluttered"]["top3"],
        "unknown_below_threshold": scores["unknowns"]["unknown_below_threshold"],
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
    from helpers.core.predict import PhotoRecognizer
    from helpers.layout import RECOGNIZER

    if args.top < 1:
        raise ValueError(f"--top must be >= 1, got {args.top}")
    uri = args.recognizer or storage.join(config.default_output(), RECOGNIZER)
    recognizer = PhotoRecognizer(
        uri,
        weights=args.weights,
        runtime=args.runtime,
        precision=args.precision,
        allow_mismatch=args.allow_mismatch,
    )
    started = time.perf_counter()
    answers = recognizer.predict(args.photos, top=args.top)
    elapsed = time.perf_counter() - started
    for answer in answers:
        if args.json:
            print(json.dumps(answer.as_dict(), ensure_ascii=False))
        else:
            print(f"{answer.photo}: {answer.summary()}")
    failed = sum(a.error is not None for a in answers)
    print(
        f"{len(answers) - failed} of {len(answers)} photos answered in {elapsed:.2f} s "
        f"({elapsed / max(len(answers), 1) * 1000:.0f} ms/photo; loading took "
        f"{recognizer.load_seconds:.1f} s)",
        file=sys.stderr,
    )
    return 1 if failed else 0
