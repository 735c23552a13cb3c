"""The recognizer as plain arrays: what ``predict`` reads, with NumPy and without Spark.

A recognizer folder (:func:`helpers.spark.classify.save_recognizer`) holds::

    recognizer.json   backbone, labels, classifier, k, settings
    model.npz         NumPy's .npz (a zip of .npy files, no pickled objects):
        mean          (d,)   feature means of the training rows
        scale         (d,)   1 / standard deviation (0 where the deviation is 0)
        components    (d, k) principal components, one per column
        weight_0, bias_0, ..., weight_n, bias_n
                      the classifier's dense layers, ``x @ weight_i + bias_i``, sigmoid between
                      layers and softmax after the last (logistic regression: one layer)
        labels        (c,)   label names, in the order of the probabilities
    pipeline/         the same model as a Spark ML PipelineModel, for Spark jobs

So ``probabilities = softmax(layers(((features - mean) * scale) @ components))``: the numbers of
the Spark pipeline (a test checks 1e-5), readable from any language that reads .npy files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

#: A recognizer folder holds its description here, the arrays in ARRAYS_FILE and the Spark ML
#: pipeline in PIPELINE_DIR.
META_FILE = "recognizer.json"
#: ``recognizer.json``'s format. 1: before the recipe (backbone, input size, runtime, precision
#: and weights as separate settings, no ``format`` key). 2: ``settings.recipe`` holds the
#: features' recipe as their manifest has it (:mod:`helpers.core.recipe`). Readers accept both.
META_FORMAT = 2
ARRAYS_FILE = "model.npz"
PIPELINE_DIR = "pipeline"


class UnsupportedRecognizer(ValueError):
    """The arrays do not describe a recognizer this module can apply."""


def softmax(margins: np.ndarray) -> np.ndarray:
    shifted = margins - margins.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    # the tanh form does not overflow for large |x|
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class RecognizerArrays:
    """Scaler, PCA and classifier layers of a recognizer, with its label names."""

    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    labels: list[str]

    @property
    def feature_dim(self) -> int:
        return self.components.shape[0]

    def project(self, features: np.ndarray) -> np.ndarray:
        """Standardize and project ``(n, d)`` features onto the k principal components."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise ValueError(f"expected features of shape (n, {self.feature_dim}), got {x.shape}")
        return ((x - self.mean) * self.scale) @ self.components

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(n, labels)`` class probabilities, columns in :attr:`labels` order."""
        x = self.project(features)
        for i, (weight, bias) in enumerate(self.layers):
            x = x @ weight + bias
            x = softmax(x) if i == len(self.layers) - 1 else sigmoid(x)
        return x

    def to_bytes(self) -> bytes:
        """The ``model.npz`` file."""
        self.check()
        named = {"mean": self.mean, "scale": self.scale, "components": self.components}
        for i, (weight, bias) in enumerate(self.layers):
            named[f"weight_{i}"], named[f"bias_{i}"] = weight, bias
        named["labels"] = np.asarray(self.labels, dtype=str)
        buffer = io.BytesIO()
        np.savez(buffer, **{name: np.asarray(value) for name, value in named.items()})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RecognizerArrays:
        """Read a ``model.npz`` file, checking that the shapes chain."""
        try:
            npz = np.load(io.BytesIO(data), allow_pickle=False)
            arrays = {name: npz[name] for name in npz.files}
        except (OSError, ValueError) as err:
            raise UnsupportedRecognizer(f"not a recognizer's {ARRAYS_FILE}: {err}") from err
        missing = {"mean", "scale", "components", "labels", "weight_0", "bias_0"} - set(arrays)
        if missing:
            raise UnsupportedRecognizer(f"{ARRAYS_FILE} lacks {', '.join(sorted(missing))}")
        layers, i = [], 0
        while f"weight_{i}" in arrays:
            layers.append((arrays[f"weight_{i}"], arrays[f"bias_{i}"]))
            i += 1
        labels = [str(label) for label in arrays["labels"].tolist()]
        found = cls(arrays["mean"], arrays["scale"], arrays["components"], layers, labels)
        found.check()
        return found

    def check(self) -> None:
        """Refuse arrays whose sizes do not chain (d -> k -> ... -> labels)."""
        if self.components.ndim != 2:
            raise UnsupportedRecognizer("components must be a (d, k) matrix")
        d, size = self.components.shape
        if self.mean.shape != (d,) or self.scale.shape != (d,):
            raise UnsupportedRecognizer(f"mean and scale must have {d} values")
        if not self.layers:
            raise UnsupportedRecognizer("no classifier layer")
        for weight, bias in self.layers:
            if weight.ndim != 2 or weight.shape[0] != size or bias.shape != (weight.shape[1],):
                raise UnsupportedRecognizer("classifier layers do not chain")
            size = weight.shape[1]
        if size != len(self.labels):
            raise UnsupportedRecognizer(f"{size} outputs for {len(self.labels)} labels")
