"""Spark's own deep-learning inference API, for comparison: ``predict_batch_udf`` (Spark 3.4+,
``pyspark.ml.functions``) with the same model and images as the plain Keras loop.

    binaryFile listing (paths only) -> predict_batch_udf(path -> 1280 floats) -> Parquet

    python benchmarks/predict_batch_udf_approach.py IMAGES_DIR OUTPUT_DIR

``make_predict_fn`` builds MobileNetV2 (Keras, 224 px, ImageNet weights, average pooling) once
per Python worker, as Spark's guide shows; ``predict`` reads, decodes and resizes a batch of
paths with Pillow and calls the model. Kept apart from the project's code: it is what the
project is measured against. Prints one JSON line: images, wall seconds (session start
included), images/s.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def make_predict_fn(weights_file: str):
    """Spark calls the returned function's factory once per Python worker."""

    def make():
        import keras
        from PIL import Image

        model = keras.applications.MobileNetV2(
            include_top=False, weights=weights_file, input_shape=(224, 224, 3), pooling="avg"
        )

        def predict(paths: np.ndarray) -> np.ndarray:
            batch = np.stack([
                np.asarray(Image.open(str(p).removeprefix("file:")).convert("RGB")
                           .resize((224, 224)), np.float32)
                for p in paths
            ])  # fmt: skip
            pixels = keras.applications.mobilenet_v2.preprocess_input(batch)
            return model(pixels, training=False).numpy()

        return predict

    return make


def main(argv: list[str]) -> int:
    images_dir, output_dir = argv
    started = time.perf_counter()
    # the workers run this interpreter (its packages), not whichever python3 is on the PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, FloatType

    from helpers.core.backbones import get_backbone
    from helpers.core.recipe import resolve_weights

    spark = (
        SparkSession.builder.master("local[*]")
        .appName("predict-batch-udf")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    weights_file = resolve_weights(get_backbone("mobilenet_v2"), "imagenet")
    featurize = predict_batch_udf(
        make_predict_fn(weights_file), return_type=ArrayType(FloatType()), batch_size=64
    )
    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(images_dir)
        .select("path")  # the content column is pruned: predict reads each file itself
    )
    images = images.withColumn("label", F.element_at(F.split(F.col("path"), "/"), -2))
    features = images.select("path", "label", featurize("path").alias("features"))
    features.write.mode("overwrite").parquet(output_dir)
    n = spark.read.parquet(output_dir).count()
    spark.stop()
    wall = time.perf_counter() - started
    print(json.dumps({"images": n, "wall_s": wall, "images_per_s": n / wall}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
