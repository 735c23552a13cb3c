"""Read a saved Spark ML pipeline (scaler + PCA + classifier) with pyarrow and apply it with
NumPy: the same numbers as ``PipelineModel.transform``, without starting Spark.

Spark ML persistence writes, for each stage, ``metadata/part-*`` (one JSON line: class and
parameters) and, for fitted models, ``data/*.parquet`` (one row: vectors and matrices as
structs). Only the stages :mod:`helpers.classify` builds are supported; any other stage is
refused by name rather than skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

#: A recognizer folder holds the Spark ML pipeline here and its description in META_FILE.
PIPELINE_DIR = "pipeline"
META_FILE = "recognizer.json"

SCALER = "org.apache.spark.ml.feature.StandardScalerModel"
PCA = "org.apache.spark.ml.feature.PCAModel"
LOGISTIC = "org.apache.spark.ml.classification.LogisticRegressionModel"
MLP = "org.apache.spark.ml.classification.MultilayerPerceptronClassificationModel"
INDEX_TO_STRING = "org.apache.spark.ml.feature.IndexToString"


class UnsupportedPipeline(ValueError):
    """The folder is not a pipeline this module can apply."""


def _metadata(stage_dir: Path) -> dict:
    parts = sorted((stage_dir / "metadata").glob("part-*"))
    if not parts:
        raise UnsupportedPipeline(f"no Spark ML metadata under {stage_dir}")
    return json.loads(parts[0].read_text(encoding="utf-8").splitlines()[0])


def _param(meta: dict, name: str) -> Any:
    if name in meta.get("paramMap", {}):
        return meta["paramMap"][name]
    return meta.get("defaultParamMap", {}).get(name)


def _data(stage_dir: Path) -> dict:
    rows = pq.read_table(stage_dir / "data").to_pylist()
    if len(rows) != 1:
        raise UnsupportedPipeline(f"expected one data row under {stage_dir}, found {len(rows)}")
    return rows[0]


def vector(struct: dict) -> np.ndarray:
    """A Spark ML vector as stored in Parquet (type 1 dense, 0 sparse) -> float64 array."""
    if struct["type"] == 1:
        return np.asarray(struct["values"], dtype=np.float64)
    out = np.zeros(struct["size"], dtype=np.float64)
    out[np.asarray(struct["indices"], dtype=np.int64)] = struct["values"]
    return out


def matrix(struct: dict) -> np.ndarray:
    """A Spark ML matrix as stored in Parquet (type 1 dense, 0 sparse CSC; transposed flag
    means row-major / CSR) -> (numRows, numCols) float64 array."""
    rows, cols, transposed = struct["numRows"], struct["numCols"], struct["isTransposed"]
    values = np.asarray(struct["values"], dtype=np.float64)
    if struct["type"] == 1:
        return values.reshape((rows, cols), order="C" if transposed else "F")
    out = np.zeros((rows, cols), dtype=np.float64)
    pointers, indices = struct["colPtrs"], struct["rowIndices"]
    outer = rows if transposed else cols
    for j in range(outer):
        for p in range(pointers[j], pointers[j + 1]):
            if transposed:
                out[j, indices[p]] = values[p]
            else:
                out[indices[p], j] = values[p]
    return out


def softmax(margins: np.ndarray) -> np.ndarray:
    shifted = margins - margins.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # the tanh form does not overflow for large |x|
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class SavedPipeline:
    """Scaler + PCA + classifier (+ label names) loaded from a saved ``PipelineModel``."""

    mean: np.ndarray | None  # None: no centring (withMean false)
    scale: np.ndarray | None  # 1/std, 0 where std is 0; None: no scaling (withStd false)
    components: np.ndarray  # (d, k)
    classifier: str  # "logistic_regression" or "mlp"
    params: dict  # logistic: coefficients (c, k), intercepts (c,), multinomial; mlp: layers
    labels: list[str]

    @property
    def feature_dim(self) -> int:
        return self.components.shape[0]

    def project(self, features: np.ndarray) -> np.ndarray:
        """Standardize and project ``(n, d)`` features onto the k principal components."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise ValueError(f"expected features of shape (n, {self.feature_dim}), got {x.shape}")
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x * self.scale
        return x @ self.components

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(n, labels)`` class probabilities, columns in :attr:`labels` order."""
        z = self.project(features)
        if self.classifier == "logistic_regression":
            p = self.params
            if p["multinomial"]:
                return softmax(z @ p["coefficients"].T + p["intercepts"])
            positive = _sigmoid(z @ p["coefficients"][0] + p["intercepts"][0])
            return np.column_stack([1.0 - positive, positive])
        return self._mlp(z)

    def _mlp(self, x: np.ndarray) -> np.ndarray:
        # Spark's layout: per layer, an (out x in) column-major weight block then out biases;
        # sigmoid between layers, softmax at the end.
        layers, weights = self.params["layers"], self.params["weights"]
        offset = 0
        for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
            w = weights[offset : offset + n_in * n_out].reshape((n_out, n_in), order="F")
            offset += n_in * n_out
            b = weights[offset : offset + n_out]
            offset += n_out
            x = x @ w.T + b
            x = softmax(x) if i == len(layers) - 2 else _sigmoid(x)
        return x


def load(pipeline_dir: str | Path) -> SavedPipeline:
    """Read a pipeline saved by :func:`helpers.classify.save_recognizer` (its ``pipeline/``)."""
    root = Path(pipeline_dir)
    if not (root / "metadata").is_dir():
        raise UnsupportedPipeline(f"not a saved Spark ML pipeline: {root}")
    uids = _param(_metadata(root), "stageUids") or []
    stage_dirs = [
        next(iter((root / "stages").glob(f"{i}_{uid}")), None) for i, uid in enumerate(uids)
    ]
    if None in stage_dirs:
        raise UnsupportedPipeline(f"stage folders missing under {root / 'stages'}")
    found: dict[str, Any] = {}
    for stage_dir in stage_dirs:
        meta = _metadata(stage_dir)
        cls = meta["class"]
        if cls == SCALER:
            data = _data(stage_dir)
            std = vector(data["std"])
            found["mean"] = vector(data["mean"]) if _param(meta, "withMean") else None
            found["scale"] = (
                np.where(std != 0.0, 1.0 / np.where(std != 0.0, std, 1.0), 0.0)
                if _param(meta, "withStd")
                else None
            )
        elif cls == PCA:
            found["components"] = matrix(_data(stage_dir)["pc"])
        elif cls == LOGISTIC:
            data = _data(stage_dir)
            found["classifier"] = "logistic_regression"
            found["params"] = {
                "coefficients": matrix(data["coefficientMatrix"]),
                "intercepts": vector(data["interceptVector"]),
                "multinomial": bool(data["isMultinomial"]),
            }
        elif cls == MLP:
            found["classifier"] = "mlp"
            found["params"] = {
                "layers": [int(n) for n in _param(meta, "layers")],
                "weights": vector(_data(stage_dir)["weights"]),
            }
        elif cls == INDEX_TO_STRING:
            found["labels"] = list(_param(meta, "labels"))
        else:
            raise UnsupportedPipeline(f"unsupported stage {cls} in {root}")
    required = {
        "scale": "a StandardScalerModel",
        "components": "a PCAModel",
        "classifier": "a classifier",
        "labels": "an IndexToString",
    }
    missing = [what for key, what in required.items() if key not in found]
    if missing:
        raise UnsupportedPipeline(f"{root} lacks {', '.join(missing)}")
    return SavedPipeline(**found)
