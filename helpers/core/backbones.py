"""Pretrained backbones by name, and where their weights come from.

Weights are looked up in this order, first hit wins:

1. an explicit file (``weights="/path/file.h5"`` or ``s3://...``),
2. Keras's own cache (``$KERAS_HOME/models`` or ``~/.keras/models``) under Keras's file name,
3. ``$FRUITS_MODELS_DIR`` folders and the shared ``models/`` folder beside the project,
   then the folder URI ``$FRUITS_MODELS_URI`` (on EMR: the weights ``emr stage`` uploaded),
4. Keras's download (what ``weights="imagenet"`` does when online), into Keras's cache.

When none works the error names the file and where to put it. Random weights are only ever
used when asked for by name (``weights="random"``), which is meant for tests of other backbones.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers import config, defaults, storage

log = logging.getLogger(__name__)

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


class WeightsNotFoundError(FileNotFoundError):
    """No pretrained weight file could be found or downloaded."""


#: ImageNet channel means (RGB) subtracted by the "caffe" preprocessing of ResNet50 and VGG16.
_CAFFE_MEAN_RGB = np.array([123.68, 116.779, 103.939], dtype=np.float32)


@dataclass(frozen=True)
class Backbone:
    """A Keras application used as a feature extractor (no top, global average pooling)."""

    name: str
    keras_class: str  # attribute of keras.applications
    #: Keras's ``preprocess_input`` mode for this model, done here in NumPy so that workers
    #: running another inference runtime never import Keras: "tf" scales to [-1, 1], "caffe"
    #: flips to BGR and subtracts ImageNet's means, "none" leaves pixels to the model.
    preprocess_mode: str
    input_size: tuple[int, int]  # (width, height)
    feature_dim: int
    weights_file: str  # file name in Keras's cache
    weights_url: str
    #: Square input sizes the ImageNet weights are used at (the convolutions are the same at
    #: every size; a no-top model with average pooling gives ``feature_dim`` at each).
    sizes: tuple[int, ...] = (224,)

    def preprocess(self, batch: np.ndarray) -> np.ndarray:
        """Keras's ``preprocess_input`` for this model on an ``(n, h, w, 3)`` RGB batch."""
        x = batch.astype(np.float32, copy=True)
        if self.preprocess_mode == "tf":
            x /= 127.5
            x -= 1.0
        elif self.preprocess_mode == "caffe":
            x -= _CAFFE_MEAN_RGB
            x = x[..., ::-1]
        return x

    def at_size(self, size: int | None) -> Backbone:
        """The same backbone fed ``size`` x ``size`` images (None: its default size).

        Raises:
            ValueError: a size these weights are not used at.
        """
        if size is None or (size, size) == self.input_size:
            return self
        if int(size) not in self.sizes:
            choices = ", ".join(str(s) for s in self.sizes)
            raise ValueError(f"input_size {size} is not supported by {self.name}; use {choices}")
        return dataclasses.replace(self, input_size=(int(size), int(size)))


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Backbone(
            name="mobilenet_v2",
            keras_class="MobileNetV2",
            preprocess_mode="tf",
            input_size=(224, 224),
            feature_dim=1280,
            weights_file="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            weights_url=KERAS_WEIGHTS_URL + "mobilenet_v2/",
            # Keras publishes MobileNetV2 at these resolutions; the 224 weights serve them all.
            sizes=(96, 128, 160, 192, 224),
        ),
        Backbone(
            name="resnet50",
            keras_class="ResNet50",
            preprocess_mode="caffe",
            input_size=(224, 224),
            feature_dim=2048,
            weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_url=KERAS_WEIGHTS_URL + "resnet/",
        ),
        Backbone(
            name="vgg16",
            keras_class="VGG16",
            preprocess_mode="caffe",
            input_size=(224, 224),
            feature_dim=512,
            weights_file="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            weights_url=KERAS_WEIGHTS_URL + "vgg16/",
        ),
        Backbone(
            name="efficientnet_b0",
            keras_class="EfficientNetB0",
            preprocess_mode="none",
            input_size=(224, 224),
            feature_dim=1280,
            weights_file="efficientnetb0_notop.h5",
            weights_url="https://storage.googleapis.com/keras-applications/",
        ),
    )
}


def get_backbone(name: str) -> Backbone:
    """Look a backbone up by name (case-insensitive, ``-`` or ``_``)."""
    key = name.strip().lower().replace("-", "_")
    if key not in BACKBONES:
        raise ValueError(f"unknown model_name {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[key]


@dataclass(frozen=True)
class FeatureSpec:
    """How features are computed: which backbone, at which input size, by which inference
    runtime at which precision. Runs, manifests, workers and ``predict`` share it, so features
    that are compared were made the same way."""

    model_name: str = defaults.MODEL_NAME
    input_size: int = defaults.INPUT_SIZE
    runtime: str = defaults.RUNTIME
    precision: str = defaults.PRECISION

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_name", get_backbone(self.model_name).name)
        object.__setattr__(self, "input_size", int(self.input_size))
        if self.runtime not in defaults.RUNTIMES:
            raise ValueError(
                f"unknown runtime {self.runtime!r}; choose one of {', '.join(defaults.RUNTIMES)}"
            )
        if self.precision not in defaults.PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; "
                f"choose one of {', '.join(defaults.PRECISIONS)}"
            )
        if self.precision != "fp32" and self.runtime != "openvino":
            raise ValueError(f"precision {self.precision} needs runtime openvino")
        self.backbone  # noqa: B018 - raises ValueError for an unsupported size

    @property
    def backbone(self) -> Backbone:
        return get_backbone(self.model_name).at_size(self.input_size)

    def manifest(self) -> dict:
        """The fields a manifest records (and a later step compares)."""
        return {
            "backbone": self.model_name,
            "input_size": [self.input_size, self.input_size],
            "runtime": self.runtime,
            "precision": self.precision,
        }

    @classmethod
    def from_manifest(cls, manifest: dict) -> FeatureSpec:
        """The spec a manifest was written for; fields it lacks are the defaults of the
        releases that did not record them (224, TensorFlow, fp32)."""
        size = manifest.get("input_size") or [defaults.INPUT_SIZE]
        runtime = manifest.get("runtime")
        precision = manifest.get("precision", "fp32")
        return cls(
            manifest.get("backbone", defaults.MODEL_NAME),
            int(size[0]),
            # earlier manifests kept package versions under "runtime" and said "float32"
            runtime if isinstance(runtime, str) else "tensorflow",
            "fp32" if precision == "float32" else precision,
        )


def keras_cache_dir() -> Path:
    """Keras's weight cache: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def resolve_weights(
    backbone: Backbone, weights: str | None = "imagenet", download: bool = True
) -> str | None:
    """Find the backbone's weight file and return its path or URI.

    Args:
        backbone: the model.
        weights: ``"imagenet"`` (default) to search as described in the module docstring,
            a file path / URI to use that file, or ``"random"`` for random initialisation.
        download: allow Keras's download as the last resort.

    Returns:
        A local path or remote URI of the weight file, or None for ``"random"``.

    Raises:
        WeightsNotFoundError: no file found; the message says which file and where to put it.
    """
    if weights == "random":
        log.warning("%s: random weights requested; features will carry no meaning", backbone.name)
        return None
    if weights not in (None, "imagenet"):
        if storage.is_local(weights) and not storage.local_path(weights).is_file():
            raise WeightsNotFoundError(f"weights file not found: {weights}")
        return weights

    searched = [keras_cache_dir(), *config.models_dirs()]
    for folder in searched:
        candidate = folder / backbone.weights_file
        if candidate.is_file():
            return str(candidate)
    remote = config.models_uri()
    if remote:  # a cluster reads the staged file: its nodes need no internet
        candidate_uri = storage.join(remote, backbone.weights_file)
        if storage.is_s3(candidate_uri) and storage._s3_has(*storage.split_s3(candidate_uri)):
            return candidate_uri
        searched.append(remote)

    if download:
        try:
            import keras

            return keras.utils.get_file(
                backbone.weights_file,
                backbone.weights_url + backbone.weights_file,
                cache_subdir="models",
            )
        except Exception as err:  # any network or HTTP failure
            reason = f"download failed ({type(err).__name__}: {err})"
    else:
        reason = "download disabled"
    places = ", ".join(str(p) for p in searched)
    raise WeightsNotFoundError(
        f"ImageNet weights for {backbone.name} not found: {reason}.\n"
        f"Looked for {backbone.weights_file} in: {places}.\n"
        f"Get it from {backbone.weights_url}{backbone.weights_file} and put it in "
        f"{keras_cache_dir()} (or a folder named by ${config.ENV_MODELS_DIR}), "
        f"or pass its path as the weights parameter."
    )


def build_model(backbone: Backbone, weights_path: str | None):
    """Build the Keras feature extractor (no top, global average pooling).

    ``weights_path`` None means random initialisation; callers get there only through
    ``resolve_weights(..., weights="random")``.
    """
    import keras

    width, height = backbone.input_size
    cls = getattr(keras.applications, backbone.keras_class)
    return cls(
        include_top=False,
        weights=weights_path,
        input_shape=(height, width, 3),
        pooling="avg",
    )
