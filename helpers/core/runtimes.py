"""OpenVINO as the backbone's inference runtime: conversion from the Keras model, a cache of
converted models, precision checks. No Spark; TensorFlow only to convert.

The Keras model (same weights file, same input size) is converted once per machine into
OpenVINO's IR (an ``.xml`` graph and a ``.bin`` of weights) and kept in the cache folder
(:func:`helpers.config.cache_dir`). The Spark driver converts and ships the IR to the
executors, whose Python workers then never import TensorFlow or Keras.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from helpers import config, storage
from helpers.core.backbones import Backbone, build_model

log = logging.getLogger(__name__)

#: OpenVINO's names of the precisions the project offers.
_HINTS = {"fp32": "f32", "bf16": "bf16"}
#: What a CPU must report in OpenVINO's OPTIMIZATION_CAPABILITIES for each precision.
_NEEDS = {"bf16": "BF16"}


class RuntimeUnavailableError(RuntimeError):
    """The inference runtime asked for is not installed."""


def import_openvino():
    """The ``openvino`` module, or a one-line error saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise RuntimeUnavailableError(
            "runtime openvino is not installed: pip install openvino (see pyproject.toml)"
        ) from None
    return openvino


def effective_precision(precision: str) -> tuple[str, str | None]:
    """The precision this CPU can run, and why it differs from the one asked for (or None)."""
    need = _NEEDS.get(precision)
    if need is None:
        return precision, None
    capabilities = import_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if need in capabilities:
        return precision, None
    return "fp32", (
        f"precision {precision} needs {need} instructions, which this CPU lacks "
        f"(it offers {', '.join(capabilities)}); running fp32"
    )


def openvino_ir(backbone: Backbone, weights: str | None) -> Path:
    """The backbone converted to OpenVINO IR at its input size (``.xml``; ``.bin`` beside),
    from the cache or converted now (a few seconds, TensorFlow needed) and cached.

    ``weights`` is the weight file, local or on S3 (None, random weights, is refused: there
    is nothing to convert that a later run could match); the IR's name carries the backbone, the
    size and a digest of the file's bytes, so another weight file never reuses it.
    """
    if weights is None:
        raise ValueError("runtime openvino needs pretrained weights, not random ones")
    ov = import_openvino()
    data = storage.read_bytes(weights)
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = config.cache_dir() / "openvino"
    target = folder / f"{backbone.name}_{backbone.input_size[0]}_{digest}.xml"
    if target.is_file() and target.with_suffix(".bin").is_file():
        return target
    import tensorflow as tf

    folder.mkdir(parents=True, exist_ok=True)
    weights_path = str(storage.local_copy(weights, config.cache_dir() / "weights"))

    log.info("converting %s at %d to OpenVINO IR", backbone.name, backbone.input_size[0])
    model = build_model(backbone, weights_path)
    width, height = backbone.input_size

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32)])
    def infer(batch):
        return model(batch, training=False)

    converted = ov.convert_model(infer)
    # Written under a temporary name and renamed, .bin first: a reader never sees half a model,
    # and two processes converting at once both end with a whole one.
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        staged = Path(tmp) / target.name
        ov.save_model(converted, str(staged), compress_to_fp16=False)
        os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
        os.replace(staged, target)
    return target


def load_openvino_fn(ir_path: str, precision: str = "fp32", threads: int = 0):
    """Compile an IR for the CPU; return ``batch -> features`` (float32 NumPy)."""
    ov = import_openvino()
    precision, reason = effective_precision(precision)
    if reason:
        log.warning("%s", reason)
    config_ = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "NUM_STREAMS": 1}
    if threads > 0:
        config_["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(ir_path), "CPU", config_)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def infer(batch):
        return request.infer([batch])[output].copy()

    return infer
