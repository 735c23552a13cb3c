"""CNN features inside Spark: a pandas iterator UDF over Arrow batches of listed files.

The weight file (or, for OpenVINO, the model converted on the driver) goes to the executors
once (``SparkContext.addFile``); each Python worker builds the model once (module-level cache,
``spark.python.worker.reuse``), reads its files by path (:func:`helpers.core.inputs.read_file`:
any name, local or S3) and streams batches through it. Files that cannot be read or decoded
become rows with ``features = null`` and an ``error`` reason.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from helpers import defaults, storage
from helpers.core import inference
from helpers.core.recipe import FeatureSpec, Recipe
from helpers.spark.jobs import default_parallelism, inheritable, jobs_named

log = logging.getLogger(__name__)

FEATURE_SCHEMA = T.StructType(
    [
        T.StructField("features", T.ArrayType(T.FloatType()), True),
        T.StructField("error", T.StringType(), True),
    ]
)


# One model per (spec, model file, threads) per Python worker process.
_WORKER_MODELS: dict[tuple[FeatureSpec, str | None, int], object] = {}


def ship_weights(spark: SparkSession, weights_path: str | None) -> str | None:
    """Send the weight file to every executor once; return the name to look it up by."""
    if weights_path is None:
        return None
    uri = str(weights_path)
    try:
        spark.sparkContext.addFile(uri)
    except Exception as err:
        # Spark refuses a second file of the same name from another path; the same path
        # added twice is accepted silently.
        raise ValueError(f"cannot ship weights {storage.redact(uri)}: {err}") from None
    return os.path.basename(uri.rstrip("/"))


def ship_model(spark: SparkSession, spec: FeatureSpec, weights_path: str | None) -> str | None:
    """Send what the workers load to every executor: the weight file for TensorFlow, the
    converted model (converted here once, cached) for OpenVINO. Returns the file name."""
    if spec.runtime != "openvino":
        return ship_weights(spark, weights_path)
    from helpers.core import runtimes

    ir = runtimes.openvino_ir(spec.backbone, weights_path)
    ship_weights(spark, str(ir.with_suffix(".bin")))  # found beside the .xml by OpenVINO
    return ship_weights(spark, str(ir))


def feature_udf(spec: FeatureSpec, model_name: str | None, batch_size: int, tf_threads: int):
    """Build the pandas UDF: file path -> struct<features: array<float>, error: string>."""

    @F.pandas_udf(FEATURE_SCHEMA)
    def extract(paths: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        model_fn = _worker_model(spec, model_name, tf_threads)
        backbone = spec.backbone
        for batch in paths:
            yield inference.featurize_paths(backbone, model_fn, batch.tolist(), batch_size)

    return extract


def rendered_feature_udf(
    spec: FeatureSpec, model_name: str | None, batch_size: int, tf_threads: int, render
):
    """Build the pandas UDF: (file path or null, copy) -> struct<features, error>, the
    features of the picture ``render`` makes (see :func:`inference.featurize_paths`)."""

    @F.pandas_udf(FEATURE_SCHEMA)
    def extract(rows: Iterator[tuple[pd.Series, pd.Series]]) -> Iterator[pd.DataFrame]:
        model_fn = _worker_model(spec, model_name, tf_threads)
        for paths, copies in rows:
            paths_list = [None if pd.isna(p) else p for p in paths.tolist()]
            yield inference.featurize_paths(
                spec.backbone, model_fn, paths_list, batch_size,
                render=render, copies=[int(c) for c in copies.tolist()],
            )  # fmt: skip

    return extract


def _worker_model(spec: FeatureSpec, model_name: str | None, tf_threads: int):
    key = (spec, model_name, tf_threads)
    if key not in _WORKER_MODELS:
        _WORKER_MODELS[key] = inference.load_inference_fn(spec, _local_file(model_name), tf_threads)
    return _WORKER_MODELS[key]


def _local_file(name: str | None) -> str | None:
    if name is None:
        return None
    from pyspark import SparkFiles

    return SparkFiles.get(name)


def warm_workers(spark: SparkSession, spec: FeatureSpec) -> Future:
    """Start a Python worker in every task slot and import the runtime there, in the
    background, while the driver lists the input and ships the model.

    A session's first Python task pays for the worker daemon, the worker, pandas/Arrow and the
    runtime's import (about 5 s with OpenVINO, more with TensorFlow); with
    ``spark.python.worker.reuse`` the featurization's tasks then find those workers ready.
    Returns the background job's future; a failure there only loses the head start (the
    featurization meets and reports any real problem itself).
    """
    slots = default_parallelism(spark)

    def warm(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from helpers.core import inference as worker_inference

        worker_inference.import_runtime(spec)
        yield from batches

    def run() -> None:
        with jobs_named(
            spark, f"featurize: start Python workers, import {spec.runtime}", group="featurize"
        ):
            spark.range(slots, numPartitions=slots).mapInPandas(warm, "id long").collect()

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-workers")
    future = pool.submit(inheritable(spark, run))
    pool.shutdown(wait=False)
    return future


def settle(warming: Future | None) -> None:
    """Wait for :func:`warm_workers`' job; a failure is logged, never raised."""
    if warming is None:
        return
    try:
        warming.result()
    except Exception as err:  # only the head start is lost
        log.info("warming the Python workers failed (%s); they start with the featurization",
                 str(err).splitlines()[0] if str(err) else type(err).__name__)  # fmt: skip


def tf_threads_per_task(spark: SparkSession) -> int:
    """Inference threads per Python worker: the cores one Spark task may use."""
    return max(1, int(spark.conf.get("spark.task.cpus", "1")))


def add_features(
    images_df: DataFrame,
    recipe: Recipe,
    batch_size: int = defaults.BATCH_SIZE,
    tf_threads: int | None = None,
    render=None,
    copy_col: str = "copy",
) -> DataFrame:
    """Add ``features`` (array<float>) and ``error`` (string) to listed images.

    Args:
        images_df: rows with a ``path`` (as from :func:`helpers.spark.ingest.list_images`).
        recipe: backbone, input size, runtime, precision and the weight file, resolved by the
            caller (:meth:`helpers.core.recipe.Recipe.resolve`).
        batch_size: images per model call inside a worker.
        tf_threads: inference threads per worker; default one task's cores.
        render: features of the picture ``render(bytes | None, path, copy, size)`` makes of
            each row's file instead of the file itself (cluttered copies,
            :mod:`helpers.core.augment`); rows then need ``copy_col``, and a null path
            renders a picture without a photo.

    The result is lazy: nothing runs until it is written or counted.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    spec = recipe.spec
    spark = images_df.sparkSession
    model_name = ship_model(spark, spec, recipe.weights.uri)
    threads = tf_threads if tf_threads is not None else tf_threads_per_task(spark)
    if render is None:
        result: Column = feature_udf(spec, model_name, batch_size, threads)(F.col("path"))
    else:
        extract = rendered_feature_udf(spec, model_name, batch_size, threads, render)
        result = extract(F.col("path"), F.col(copy_col))
    return images_df.select(
        *[F.col(c) for c in images_df.columns],
        result.getField("features").alias("features"),
        result.getField("error").alias("error"),
    )
