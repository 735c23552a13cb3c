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

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_approach import jpegs, local_session, write_and_report  # noqa: E402


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
    from pyspark.sql.types import ArrayType, FloatType

    from helpers.core.backbones import get_backbone
    from helpers.core.recipe import resolve_weights

    spark = local_session("predict-batch-udf")
    weights_file = resolve_weights(get_backbone("mobilenet_v2"), "imagenet")
    featurize = predict_batch_udf(
        make_predict_fn(weights_file), return_type=ArrayType(FloatType()), batch_size=64
    )
    # only path and label are selected, so binaryFile never reads the content: predict does
    features = jpegs(spark, images_dir).select("path", "label", featurize("path").alias("features"))
    write_and_report(spark, features, output_dir, started)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
