"""CNN features of image bytes with TensorFlow or OpenVINO (:mod:`helpers.core.runtimes`),
no Spark: the code the Spark UDF
(:mod:`helpers.spark.featurize`) runs in its workers and the photo recognizer
(:mod:`helpers.core.predict`) runs in one process, so both compute the same numbers.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from helpers import config, storage
from helpers.core import images, inputs
from helpers.core.backbones import Backbone, build_model
from helpers.core.recipe import FeatureSpec


def load_inference_fn(spec: FeatureSpec | str, model_file: str | None, tf_threads: int = 0):
    """Build the backbone and return a compiled ``batch -> features`` function.

    Args:
        spec: how features are computed (a backbone name means its defaults).
        model_file: the weight file (None: random weights, TensorFlow only); for the OpenVINO
            runtime, the weight file or the model already converted (``.xml``).
        tf_threads: > 0 caps the runtime's threads, so that Spark's task slots times the
            runtime's threads does not exceed the cores.
    """
    if isinstance(spec, str):
        spec = FeatureSpec(spec)
    if spec.runtime == "openvino":
        from helpers.core import runtimes

        if model_file is None or not str(model_file).endswith(".xml"):
            model_file = str(runtimes.openvino_ir(spec.backbone, model_file))
        return runtimes.load_openvino_fn(model_file, spec.precision, tf_threads)
    return _load_tensorflow_fn(spec.backbone, model_file, tf_threads)


def import_runtime(spec: FeatureSpec) -> None:
    """Import the spec's runtime library without building a model: what a Spark worker can do
    before the model file reaches it (TensorFlow's import alone takes seconds)."""
    if spec.runtime == "openvino":
        from helpers.core import runtimes

        runtimes.import_openvino()
    else:
        _import_tensorflow()


def _import_tensorflow():
    # TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI, BF16 or
    # AMX; on AVX2 machines (many AMD and older Intel instances) they run MobileNetV2 about
    # 1.65x faster, with features within 3e-5 of the default kernels (README, "Speed and
    # sizes"). A process that imported TensorFlow already keeps its kernels; an explicit
    # setting by the user wins.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    from helpers.core.quiet_tf import import_tensorflow

    return import_tensorflow()  # without its start-up INFO lines, in workers and `predict`


def _load_tensorflow_fn(backbone: Backbone, weights_path: str | None, tf_threads: int):
    tf = _import_tensorflow()
    if tf_threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(2, tf_threads))
        except RuntimeError:
            pass  # TensorFlow already initialised in this process; keep its pools
    if weights_path is not None:  # Keras reads local files only: an s3:// file is copied
        weights_path = str(storage.local_copy(weights_path, config.cache_dir() / "weights"))
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
    loaded = [_decoded(backbone, lambda c=c: c) for c in contents]
    return _featurize_loaded(
        backbone, model_fn, [loaded[i : i + batch_size] for i in range(0, len(loaded), batch_size)]
    )


def featurize_paths(
    backbone: Backbone,
    model_fn,
    paths: list[str | None],
    batch_size: int,
    threads: int | None = None,
    render=None,
    copies: list[int] | None = None,
) -> pd.DataFrame:
    """Read, decode and featurize listed files (``file:`` paths or S3 URIs), like
    :func:`featurize_batch`; a file that cannot be read gets the reason in ``error``.

    With ``render`` (``(bytes | None, path, copy, size) -> RGB array``, e.g.
    :meth:`helpers.core.augment.AugmentSpec.render`), each file is turned into the
    picture ``render`` makes of it, ``copies`` giving each row's copy number; a None path
    renders a picture without a photo.

    Files are read and decoded by a few threads (Pillow and S3 reads release the GIL) while the
    model runs on the previous batch. Memory: two batches of decoded pixels and one file per
    thread; the bytes of a file are dropped once decoded.
    """
    threads = threads or inputs.read_threads([p for p in paths if p])
    with ThreadPoolExecutor(threads, thread_name_prefix="read") as pool:

        def batches():
            pending = None
            for start in range(0, len(paths), batch_size):
                chunk = paths[start : start + batch_size]
                submitted = [
                    pool.submit(_decoded, backbone, _reader(p))
                    if render is None
                    else pool.submit(_rendered, backbone, p, copies[start + i], render)
                    for i, p in enumerate(chunk)
                ]
                if pending is not None:
                    yield [f.result() for f in pending]
                pending = submitted
            if pending is not None:
                yield [f.result() for f in pending]

        return _featurize_loaded(backbone, model_fn, batches())


def _reader(path: str):
    return lambda: inputs.read_file(path)


def _decoded(backbone: Backbone, read) -> tuple[np.ndarray | None, str | None]:
    try:
        return images.decode_rgb(read(), backbone.input_size), None
    except (images.ImageDecodeError, inputs.ReadError) as err:
        return None, str(err)


def _rendered(backbone: Backbone, path: str | None, copy: int, render):
    try:
        data = inputs.read_file(path) if path is not None else None
        return render(data, path, copy, backbone.input_size), None
    except (images.ImageDecodeError, inputs.ReadError) as err:
        return None, str(err)


def _featurize_loaded(backbone: Backbone, model_fn, batches) -> pd.DataFrame:
    features: list[np.ndarray | None] = []
    errors: list[str | None] = []
    for batch in batches:
        pixels = [p for p, _ in batch if p is not None]
        out = (
            np.asarray(model_fn(backbone.preprocess(np.stack(pixels))), dtype=np.float32)
            if pixels
            else None
        )
        i = 0
        for p, err in batch:
            features.append(None if p is None else out[i])
            errors.append(err)
            i += p is not None
    return pd.DataFrame({"features": features, "error": errors})
