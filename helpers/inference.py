"""CNN features of image bytes with TensorFlow, no Spark: the code the Spark UDF
(:mod:`helpers.featurize`) runs in its workers and the photo recognizer
(:mod:`helpers.recognize`) runs in one process, so both compute the same numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers import images
from helpers.models import Backbone, build_model, get_backbone


def load_inference_fn(name: str, weights_path: str | None, tf_threads: int = 0):
    """Build the backbone and return a compiled ``batch -> features`` function.

    ``tf_threads`` > 0 caps TensorFlow's thread pools, so that Spark's task slots times
    TensorFlow's threads does not exceed the cores.
    """
    import tensorflow as tf

    if tf_threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, tf_threads))
        except RuntimeError:
            pass  # TensorFlow already initialised in this process; keep its pools
    backbone = get_backbone(name)
    model = build_model(backbone, weights_path)
    width, height = backbone.input_size
    signature = [tf.TensorSpec([None, height, width, 3], tf.float32)]

    @tf.function(input_signature=signature)
    def infer(batch):
        return model(batch, training=False)

    return lambda batch: infer(tf.convert_to_tensor(batch)).numpy()


def featurize_batch(
    backbone: Backbone, model_fn, contents: list[bytes | None], batch_size: int
) -> pd.DataFrame:
    """Decode and featurize a list of image bytes, ``batch_size`` images per model call.

    Returns a frame with one row per input: ``features`` (float32 array or None) and
    ``error`` (None or the reason the image could not be read).
    """
    features: list[np.ndarray | None] = [None] * len(contents)
    errors: list[str | None] = [None] * len(contents)
    for start in range(0, len(contents), batch_size):
        pixels, rows = [], []
        for row in range(start, min(start + batch_size, len(contents))):
            try:
                pixels.append(images.decode_rgb(contents[row], backbone.input_size))
                rows.append(row)
            except images.ImageDecodeError as err:
                errors[row] = str(err)
        if not pixels:
            continue
        out = np.asarray(model_fn(backbone.preprocess(np.stack(pixels))), dtype=np.float32)
        for i, row in enumerate(rows):
            features[row] = out[i]
    return pd.DataFrame({"features": features, "error": errors})
