"""The reference approach most published solutions to this problem take, for comparison:

    binaryFile -> model weights broadcast -> iterator pandas UDF that rebuilds the model in
    every partition and calls ``model.predict`` -> ``repartition(20)`` -> Parquet.

    python benchmarks/reference_approach.py IMAGES_DIR OUTPUT_DIR

Kept apart from the project's code on purpose: it is what the project is measured against.
Prints one JSON line: images, wall seconds (session start included), images/s.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd


def local_session(app_name: str, **conf: str):
    """The comparison scripts' Spark session: every core, no UI."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master("local[*]").appName(app_name)
    for key, value in {"spark.ui.enabled": "false", **conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def jpegs(spark, images_dir: str):
    """binaryFile over the folder's JPEGs (path, content, ...) with the label (parent folder)."""
    from pyspark.sql import functions as F

    images = (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(images_dir)
    )
    return images.withColumn("label", F.element_at(F.split(F.col("path"), "/"), -2))


def write_and_report(spark, features, output_dir: str, started: float) -> None:
    """Write the features, count them back, stop, and print the JSON line the bench reads."""
    features.write.mode("overwrite").parquet(output_dir)
    n = spark.read.parquet(output_dir).count()
    spark.stop()
    wall = time.perf_counter() - started
    print(json.dumps({"images": n, "wall_s": wall, "images_per_s": n / wall}))


def main(argv: list[str]) -> int:
    images_dir, output_dir = argv
    started = time.perf_counter()
    # the workers run this interpreter (its packages), not whichever python3 is on the PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import functions as F

    from helpers.core.backbones import get_backbone
    from helpers.core.recipe import resolve_weights

    spark = local_session("reference-approach",
                          **{"spark.sql.execution.arrow.maxRecordsPerBatch": "1024"})  # fmt: skip
    import keras

    weights_file = resolve_weights(get_backbone("mobilenet_v2"), "imagenet")
    model = keras.applications.MobileNetV2(
        include_top=False, weights=weights_file, input_shape=(224, 224, 3), pooling="avg"
    )
    broadcast_weights = spark.sparkContext.broadcast(model.get_weights())

    def model_fn():
        rebuilt = keras.applications.MobileNetV2(
            include_top=False, weights=None, input_shape=(224, 224, 3), pooling="avg"
        )
        rebuilt.set_weights(broadcast_weights.value)
        return rebuilt

    def preprocess(content: bytes) -> np.ndarray:
        from PIL import Image

        img = Image.open(io.BytesIO(content)).convert("RGB").resize((224, 224))
        return keras.applications.mobilenet_v2.preprocess_input(np.asarray(img, np.float32))

    @F.pandas_udf("array<float>")
    def featurize(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        rebuilt = model_fn()
        for contents in batches:
            batch = np.stack([preprocess(c) for c in contents])
            yield pd.Series(list(rebuilt.predict(batch, verbose=0)))

    features = (
        jpegs(spark, images_dir)
        .repartition(20)
        .select("path", "label", featurize("content").alias("features"))
    )
    write_and_report(spark, features, output_dir, started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
