""" "What fruit is this?" for photos on disk or S3, without Spark.

:class:`PhotoRecognizer` loads a saved recognizer (:mod:`helpers.spark.classify`) and
the CNN once, then answers photos in batches: the same decoding and features as the Spark job
(:func:`helpers.core.inference.featurize_batch`), then the saved scaler + PCA + classifier
applied with NumPy (:mod:`helpers.core.arrays`). A photo that cannot be read
gets an error of its own; the others are still answered.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers import defaults, storage
from helpers.core import arrays, images, inference, inputs
from helpers.core.recipe import FeatureSpec, Recipe

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """The answer for one photo: the best labels with their probabilities, or an error."""

    photo: str
    top: list[tuple[str, float]] = field(default_factory=list)
    probabilities: np.ndarray | None = None
    error: str | None = None
    #: False when the best probability is under the recognizer's "not sure" threshold (a
    #: photo of no fruit it knows, most likely); None for recognizers saved without one.
    sure: bool | None = None

    @property
    def label(self) -> str | None:
        return self.top[0][0] if self.top else None

    def as_dict(self) -> dict:
        out: dict = {"photo": self.photo}
        if self.error is not None:
            out["error"] = self.error
        else:
            out["top"] = [{"label": lab, "probability": round(p, 6)} for lab, p in self.top]
            if self.sure is not None:
                out["sure"] = self.sure
        return out

    def summary(self) -> str:
        """One line: the top labels with their probabilities, "not sure" first when unsure."""
        if self.error is not None:
            return f"error: {self.error}"
        best = ", ".join(f"{label} {p:.1%}" for label, p in self.top)
        return f"not sure (best: {best})" if self.sure is False else best


def _refuse_half_moved(recognizer_uri: str) -> None:
    """A recognizer is whole in its output unless an interrupted commit is still moving it in
    (its output's ``_staging`` holds the journal): refused then, in one line. Killed before its
    commit, a ``recognize`` leaves the previous recognizer in place, which answers."""
    uri = recognizer_uri.rstrip("/")
    parent = uri.rsplit("/", 1)[0] if "/" in uri else "."
    try:
        pending = storage.pending_commits(parent)
    except (OSError, ValueError):  # no output around it (a copied recognizer): nothing pending
        return
    target = storage.local_path(uri).resolve().as_posix() if storage.is_local(uri) else uri
    if any(p.rstrip("/") in (target, uri) for p in pending):
        raise ValueError(
            f"{storage.redact(uri)} is being moved in by an interrupted commit: run "
            "`helpers recognize` (or any step) on its output to finish it"
        )


class PhotoRecognizer:
    """A saved recognizer and its CNN, loaded once."""

    def __init__(
        self,
        recognizer_uri: str,
        weights: str | None = None,
        batch_size: int = 16,
        runtime: str | None = None,
        precision: str | None = None,
        allow_mismatch: bool = False,
    ):
        """Load ``<recognizer_uri>/recognizer.json`` and ``model.npz`` (local or s3://) and
        build the CNN its recipe names (:mod:`helpers.core.recipe`): backbone, input size,
        runtime, precision and weight file, found where the recipe says, else where pretrained
        weights are looked up, and checked by its SHA-256; ``weights`` names another copy of
        the same file.

        ``runtime`` or ``precision`` other than those is refused (its features would not be
        the ones the classifier learnt) unless ``allow_mismatch``.
        """
        started = time.perf_counter()
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.uri = recognizer_uri
        self.batch_size = int(batch_size)
        _refuse_half_moved(recognizer_uri)
        self.metadata = _read_metadata(recognizer_uri)
        arrays_uri = storage.join(recognizer_uri, self.metadata.get("arrays", arrays.ARRAYS_FILE))
        try:
            self.model = arrays.RecognizerArrays.from_bytes(storage.read_bytes(arrays_uri))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{storage.redact(arrays_uri)} is missing: this recognizer was saved without its "
                "arrays; train it again with notebook 05_recognition or helpers recognize"
            ) from None
        settings = self.metadata.get("settings", {})
        self.recipe = recognizer_recipe(self.metadata)
        self.spec = _spec(self.recipe.spec, runtime, precision, allow_mismatch)
        self.backbone = self.spec.backbone
        if self.model.feature_dim != self.backbone.feature_dim:
            raise ValueError(
                f"recognizer expects {self.model.feature_dim} features, "
                f"{self.backbone.name} gives {self.backbone.feature_dim}"
            )
        if self.recipe.weights.kind == "random":
            raise ValueError(
                "this recognizer was trained on features of randomly initialised weights, "
                "which cannot be rebuilt to answer photos; train it on ImageNet features"
            )
        located = self.recipe.located(weights)
        self._infer = inference.load_inference_fn(self.spec, located.weights.uri)
        # the first call traces and compiles the model: paid here, so the first photo is not
        # slower than the next ones (the input signature takes any batch size)
        width, height = self.backbone.input_size
        self._infer(np.zeros((1, height, width, 3), dtype=np.float32))
        #: Answers whose best probability is under this are "not sure" (None: never).
        self.unsure_below: float | None = settings.get("unsure_below")
        self.load_seconds = time.perf_counter() - started

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def predict_bytes(
        self, photos: list[tuple[str, bytes | None]], top: int = defaults.TOP_LABELS
    ) -> list[Prediction]:
        """Answer ``(name, image bytes)`` pairs; bytes None means the file could not be read."""
        out = inference.featurize_batch(
            self.backbone, self._infer, [data for _, data in photos], self.batch_size
        )
        rows = [i for i, f in enumerate(out["features"]) if f is not None]
        probs = (
            self.model.probabilities(np.stack([out["features"][i] for i in rows]))
            if rows
            else np.zeros((0, len(self.labels)))
        )
        answers = [Prediction(name, error=out["error"][i]) for i, (name, _) in enumerate(photos)]
        for row, p in zip(rows, probs):
            best = np.argsort(-p, kind="stable")[:top]
            answers[row].top = [(self.labels[j], float(p[j])) for j in best]
            answers[row].probabilities = p
            if self.unsure_below is not None:
                answers[row].sure = bool(p[best[0]] >= self.unsure_below)
        return answers

    def predict(self, photos: Iterable[str], top: int = defaults.TOP_LABELS) -> list[Prediction]:
        """Answer photo paths or URIs (folders are expanded to their images), in order."""
        if top < 1:
            raise ValueError(f"top must be >= 1, got {top}")
        names = expand_photos(photos)
        answers: list[Prediction] = []
        for start in range(0, len(names), self.batch_size):
            chunk = names[start : start + self.batch_size]
            loaded = [(name, *_read(name)) for name in chunk]
            got = self.predict_bytes([(name, data) for name, data, _ in loaded], top)
            for answer, (_, _, read_error) in zip(got, loaded):
                if read_error is not None:
                    answer.error = read_error
            answers.extend(got)
            log.info("answered %d / %d photos", len(answers), len(names))
        return answers


def predict(
    photos: Iterable[str],
    recognizer_uri: str,
    top: int = defaults.TOP_LABELS,
    weights: str | None = "imagenet",
) -> list[Prediction]:
    """Load a recognizer and answer photos once (for many calls keep a PhotoRecognizer)."""
    return PhotoRecognizer(recognizer_uri, weights=weights).predict(photos, top=top)


def expand_photos(photos: Iterable[str]) -> list[str]:
    """Photo paths as given, folders replaced by the images under them (sorted): a local
    folder, or an S3 prefix (an ``s3://`` URI not named like an image), listed by the chain's
    own input rules."""
    names: list[str] = []
    for photo in photos:
        path = Path(photo)
        if storage.is_local(photo) and path.is_dir():
            found = sorted(str(p) for p in path.rglob("*") if images.is_image_name(p.name))
        elif storage.is_s3(photo) and not images.is_image_name(photo.rstrip("/").rsplit("/")[-1]):
            found = sorted(e.path for e in inputs.scan(photo) if not (e.ignored or e.error))
        else:
            names.append(photo)
            continue
        if not found:
            raise FileNotFoundError(f"no images under {storage.redact(photo)}")
        names.extend(found)
    return names


def _read(photo: str) -> tuple[bytes | None, str | None]:
    try:
        return storage.read_bytes(photo), None
    except FileNotFoundError:
        return None, "file not found"
    except IsADirectoryError:
        return None, "is a folder, not a photo"
    except Exception as err:  # any storage failure (permissions, S3 errors) is this photo's
        return None, f"cannot read file: {getattr(err, 'strerror', None) or err}"


def recognizer_recipe(metadata: dict) -> Recipe:
    """The recipe of the features a recognizer learnt from: ``settings.recipe`` (format 2),
    or, for recognizers saved before it (format 1), the fields kept beside the settings."""
    settings = metadata.get("settings", {})
    if "recipe" in settings:
        return Recipe.from_manifest(settings["recipe"])
    return Recipe.from_manifest(
        {
            "backbone": metadata["model_name"],
            "input_size": settings.get("input_size", defaults.INPUT_SIZE),
            "runtime": settings.get("runtime", "tensorflow"),
            "precision": settings.get("precision", "fp32"),
            "weights": settings.get("weights", "imagenet"),
            "weights_file": settings.get("weights_file"),
        }
    )


def _spec(
    trained: FeatureSpec, runtime: str | None, precision: str | None, allow_mismatch: bool
) -> FeatureSpec:
    """The recognizer's feature spec, with the runtime or precision asked for if allowed."""
    wanted = {
        "runtime": runtime or trained.runtime,
        "precision": precision or (trained.precision if runtime in (None, trained.runtime)
                                   else defaults.PRECISION),
    }  # fmt: skip
    changed = {k: v for k, v in wanted.items() if v != getattr(trained, k)}
    if not changed:
        return trained
    said = ", ".join(f"{k} {getattr(trained, k)}" for k in changed)
    asked = ", ".join(f"{k} {v}" for k, v in changed.items())
    if not allow_mismatch:
        raise ValueError(
            f"the recognizer's features were made with {said}, not {asked}; "
            "answers would differ from its evaluation (--allow-mismatch to answer anyway)"
        )
    log.warning("answering with %s; the recognizer's features were made with %s", asked, said)
    return dataclasses.replace(trained, **changed)


def _read_metadata(recognizer_uri: str) -> dict:
    meta_uri = storage.join(recognizer_uri, arrays.META_FILE)
    try:
        metadata = json.loads(storage.read_bytes(meta_uri))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no recognizer at {storage.redact(recognizer_uri)} (missing {arrays.META_FILE}); "
            "train one with notebook 05_recognition"
        ) from None
    version = metadata.get("format", 1)
    if version not in (1, arrays.META_FORMAT):
        raise ValueError(
            f"the recognizer at {storage.redact(recognizer_uri)} is in format {version}; this "
            f"release reads formats 1 and {arrays.META_FORMAT}: upgrade the project"
        )
    return metadata
