"""The feature recipe: how features are made, and its one owner.

A recipe is the backbone, the input size, the inference runtime and precision (a
:class:`FeatureSpec`) and the weights, by kind, file URI and SHA-256 (:class:`Weights`). It is
resolved once per process, at the edge (the command line, a notebook, the launcher: the only
callers of :meth:`Recipe.resolve`), and handed down; the extraction writes it into
``features/_manifest.json``, the recognizer embeds it unchanged, and ``predict``, the
recognition step and incremental runs read it back from there.

Weights are looked up in this order, first hit wins:

1. an explicit file (``weights="/path/file.h5"`` or ``s3://...``),
2. Keras's own cache (``$KERAS_HOME/models`` or ``~/.keras/models``) under Keras's file name,
3. ``$FRUITS_MODELS_DIR`` folders and the shared ``models/`` folder beside the project,
   then the folder URI ``$FRUITS_MODELS_URI`` (on EMR: the weights ``emr stage`` uploaded),
4. Keras's download (what ``weights="imagenet"`` does when online), into Keras's cache.

When none works the error names the file and where to put it. Random weights are only ever
used when asked for by name (``weights="random"``), which is meant for tests of other backbones.

Light: no Spark, TensorFlow or NumPy (Keras only for a download), so the launcher uses it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from helpers import config, defaults, storage
from helpers.core.backbones import Backbone, get_backbone

log = logging.getLogger(__name__)

#: The manifest's format. 1: the releases before the recipe (no ``format`` key; ``input_size``
#: as ``[s, s]``; weights as ``weights``/``weights_file``/``weights_sha256``, no URI).
#: 2: ``input_size`` an int and ``weights`` an object with ``kind``, ``uri``, ``name`` and
#: ``sha256``. Readers accept both.
FORMAT = 2
WEIGHT_KINDS = ("imagenet", "file", "random")


class WeightsNotFoundError(FileNotFoundError):
    """No pretrained weight file could be found or downloaded."""


class RecipeFormatError(ValueError):
    """A manifest or recognizer written by a newer release (or not one at all)."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which backbone, at which input size, by which inference runtime at which precision:
    what the code that computes features needs (workers get this, not the weights' story)."""

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


@dataclass(frozen=True)
class Weights:
    """The weights features were made with: ``kind`` (``imagenet``: Keras's published file,
    found by the lookup; ``file``: one the user gave; ``random``), where the file was read
    (``uri``, None for random or when a format-1 manifest did not say), its name and digest."""

    kind: str
    uri: str | None = None
    name: str | None = None
    sha256: str | None = None

    @classmethod
    def of_file(cls, kind: str, uri: str) -> Weights:
        return cls(kind, uri, storage.redact(uri).rsplit("/", 1)[-1], storage.sha256(uri))

    def readable(self) -> bool:
        """The recorded file is still there with the recorded content."""
        if not self.uri:
            return False
        try:
            return storage.sha256(self.uri) == self.sha256
        except Exception:  # missing, no access, an S3 error: not readable from here
            return False


@dataclass(frozen=True)
class Recipe:
    """How features are made: the spec and the weights."""

    spec: FeatureSpec
    weights: Weights

    @classmethod
    def resolve(
        cls,
        model_name: str = defaults.MODEL_NAME,
        input_size: int = defaults.INPUT_SIZE,
        runtime: str = defaults.RUNTIME,
        precision: str = defaults.PRECISION,
        weights: str | None = defaults.WEIGHTS,
        download: bool = True,
    ) -> Recipe:
        """The recipe for these choices, its weight file looked up (and hashed) now.

        Raises:
            ValueError: a bad choice; WeightsNotFoundError: no weight file.
        """
        spec = FeatureSpec(model_name, input_size, runtime, precision)
        if weights == "random" and spec.runtime == "openvino":
            raise ValueError("runtime openvino needs pretrained weights, not random ones")
        path = resolve_weights(spec.backbone, weights, download)
        if path is None:
            return cls(spec, Weights("random"))
        kind = "imagenet" if weights in (None, "imagenet") else "file"
        return cls(spec, Weights.of_file(kind, path))

    def with_weights_file(self, uri: str) -> Recipe:
        """The same recipe with its weights read from ``uri``, which must hold the recorded
        file (same SHA-256): features made with other weights would not be comparable."""
        found = Weights.of_file(self.weights.kind, uri)
        if self.weights.sha256 and found.sha256 != self.weights.sha256:
            raise ValueError(
                f"{storage.redact(uri)} is not the weight file the features were made with "
                f"({self.weights.name}, SHA-256 {self.weights.sha256[:12]}...)"
            )
        return dataclasses.replace(self, weights=found)

    def located(self, weights: str | None = None) -> Recipe:
        """This recipe with a weight file that can be read here: ``weights`` if given (checked
        against the recorded digest), else the recorded file, else (its kind being
        ``imagenet``) Keras's file found by the lookup, checked likewise.

        Raises:
            WeightsNotFoundError: none of these holds the recorded weights.
        """
        if self.weights.kind == "random":
            return self
        if weights not in (None, "imagenet"):
            return self.with_weights_file(resolve_weights(self.spec.backbone, weights))
        if self.weights.readable():
            return self
        if self.weights.kind == "imagenet" or weights == "imagenet":
            found = resolve_weights(self.spec.backbone, "imagenet")
            return self.with_weights_file(found)
        raise WeightsNotFoundError(
            f"the features were made with the weight file {self.weights.name}, which is not at "
            f"{storage.redact(self.weights.uri or '(a place the manifest does not say)')}: give "
            "the same file as weights (--weights)"
        )

    def same_features(self, other: Recipe) -> bool:
        """Features made by both recipes are the same numbers (same spec, same weights)."""
        return self.spec == other.spec and self.weights.sha256 == other.weights.sha256

    def describe(self) -> str:
        return (
            f"{self.spec.model_name} {self.spec.input_size} {self.spec.runtime} "
            f"{self.spec.precision}, weights {self.weights.name or self.weights.kind}"
        )

    # -- the manifest -----------------------------------------------------------------------

    def to_manifest(self) -> dict:
        """The recipe's fields of ``features/_manifest.json`` and of a recognizer (format 2)."""
        return {
            "format": FORMAT,
            "backbone": self.spec.model_name,
            "input_size": self.spec.input_size,
            "runtime": self.spec.runtime,
            "precision": self.spec.precision,
            "weights": {
                "kind": self.weights.kind,
                "uri": storage.redact(self.weights.uri) if self.weights.uri else None,
                "name": self.weights.name,
                "sha256": self.weights.sha256,
            },
        }

    @classmethod
    def from_manifest(cls, manifest: dict) -> Recipe:
        """The recipe a manifest (or a recognizer's ``recipe``) records, in format 2 or 1.
        Fields format 1 lacks are the defaults of the releases that did not record them (224,
        TensorFlow, fp32); its weights have no URI.

        Raises:
            RecipeFormatError: a format this release does not know.
        """
        version = manifest.get("format", 1)
        if version not in (1, FORMAT):
            raise RecipeFormatError(
                f"features described in format {version}; this release reads formats 1 and "
                f"{FORMAT}: upgrade the project, or featurize again"
            )
        size = manifest.get("input_size") or defaults.INPUT_SIZE
        runtime = manifest.get("runtime")
        precision = manifest.get("precision", "fp32")
        spec = FeatureSpec(
            manifest.get("backbone", defaults.MODEL_NAME),
            int(size[0] if isinstance(size, (list, tuple)) else size),
            # earlier manifests kept package versions under "runtime" and said "float32"
            runtime if isinstance(runtime, str) else "tensorflow",
            "fp32" if precision == "float32" else precision,
        )
        given = manifest.get("weights")
        if isinstance(given, dict):
            weights = Weights(
                given["kind"], given.get("uri"), given.get("name"), given.get("sha256")
            )
        else:  # format 1
            weights = Weights(
                given if given in WEIGHT_KINDS else "imagenet",
                None,
                manifest.get("weights_file"),
                manifest.get("weights_sha256"),
            )
        return cls(spec, weights)


def keras_cache_dir() -> Path:
    """Keras's weight cache: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def resolve_weights(
    backbone: Backbone, weights: str | None = "imagenet", download: bool = True
) -> str | None:
    """Find the backbone's weight file and return its path or URI (the lookup of the module
    docstring). Callers outside this module: :meth:`Recipe.resolve` and the launcher, which
    stages the file.

    Args:
        backbone: the model.
        weights: ``"imagenet"`` (default) to search, a file path / URI to use that file, or
            ``"random"`` for random initialisation.
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
