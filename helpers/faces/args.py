"""The runtime's command-line arguments (``python -m helpers`` / ``fruits``), in a module that
imports neither Spark nor TensorFlow: the launcher checks a step's arguments with this parser
before a cluster is paid for (``fruits-tools emr run --run-args``)."""

from __future__ import annotations

import argparse

from helpers import config, defaults
from helpers.core.backbones import BACKBONES


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m helpers`` (``fruits``): one sub-command per step."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers",
        description="Fruits! image pipeline: run, recognize, notebooks, predict",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _run_command(sub)
    _recognize_command(sub)
    _notebooks_command(sub)
    _predict_command(sub)
    return parser


def _add_feature_args(parser: argparse.ArgumentParser) -> None:
    """How features are computed: input size, inference runtime, precision."""
    parser.add_argument(
        "--input-size",
        type=int,
        default=defaults.INPUT_SIZE,
        help="side of the square images fed to the CNN; MobileNetV2: 96, 128, 160, 192 or 224 "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--runtime",
        default=defaults.RUNTIME,
        choices=defaults.RUNTIMES,
        help="inference runtime (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        default=defaults.PRECISION,
        choices=defaults.PRECISIONS,
        help="precision; bf16 needs --runtime openvino (default: %(default)s)",
    )


def _run_command(sub) -> None:
    """``run``: the chain from images to Parquet, PCA and reports."""
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
    _add_feature_args(run)
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
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress line while images are featurized (images, images/s, ETA); "
        "default: on when stderr is a terminal",
    )


def _recognize_command(sub) -> None:
    """``recognize``: the recognition step on a run's output."""
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
        "--classifier",
        default=defaults.CLASSIFIER,
        choices=defaults.CLASSIFIERS,
        help="head on the features; auto: the best cluttered top-1 on validation photos "
        "(default: %(default)s)",
    )
    recognize.add_argument(
        "--augment-copies",
        type=int,
        default=defaults.AUGMENT_COPIES,
        help="cluttered copies of each training photo added to training, 0 for none "
        "(default: %(default)s)",
    )
    recognize.add_argument(
        "--backgrounds",
        default=None,
        help="folder or URI of background photos for training copies (besides procedural ones)",
    )
    recognize.add_argument(
        "--held-out-backgrounds",
        default=None,
        help="folder or URI of background photos for the cluttered evaluation only",
    )
    recognize.add_argument(
        "--weights",
        default=None,
        help="weights to featurize the cluttered pictures with (default: the features' own)",
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


def _notebooks_command(sub) -> None:
    """``notebooks``: the five notebooks headless (papermill)."""
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


def _predict_command(sub) -> None:
    """``predict``: top labels for photos, without Spark."""
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
        "--weights",
        default=None,
        help="another copy of the weight file the recognizer's features were made with "
        "(default: where its recipe says, else where pretrained weights are looked up)",
    )
    predict.add_argument(
        "--runtime",
        default=None,
        choices=defaults.RUNTIMES,
        help="inference runtime (default: the one the recognizer's features were made with)",
    )
    predict.add_argument(
        "--precision",
        default=None,
        choices=defaults.PRECISIONS,
        help="runtime precision (default: the recognizer's)",
    )
    predict.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="answer with a runtime or precision other than the recognizer's features used",
    )
    predict.add_argument("--json", action="store_true", help="one JSON object per line")
