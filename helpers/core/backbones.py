"""Pretrained backbones by name: Keras class, preprocessing, input sizes, feature size and
the weight file Keras publishes. Light: NumPy and Keras are imported only where used, so the
launcher can name backbones and their files (:mod:`helpers.core.recipe` finds the files)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


#: ImageNet channel means (RGB) subtracted by the "caffe" preprocessing of ResNet50 and VGG16.
_CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)


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

    def preprocess(self, batch):
        """Keras's ``preprocess_input`` for this model on an ``(n, h, w, 3)`` RGB batch
        (NumPy in, float32 NumPy out)."""
        import numpy as np

        x = batch.astype(np.float32, copy=True)
        if self.preprocess_mode == "tf":
            x /= 127.5
            x -= 1.0
        elif self.preprocess_mode == "caffe":
            x -= np.array(_CAFFE_MEAN_RGB, dtype=np.float32)
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


def build_model(backbone: Backbone, weights_path: str | None):
    """Build the Keras feature extractor (no top, global average pooling).

    ``weights_path`` None means random initialisation; callers get there only through a
    recipe made with ``weights="random"`` (:mod:`helpers.core.recipe`).
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
