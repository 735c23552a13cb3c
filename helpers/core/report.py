"""The reports: JSON files next to the outputs that say what a step did, for people.

Feature extraction writes ``run_report.json``, the PCA step ``pca_report.json``. They are
written, never read back: what a later step must know about the features is in their manifest
(:meth:`helpers.layout.OutputLayout.read_manifest`). No image bytes, no credentials (URIs are
redacted).
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from helpers import __version__, storage


def extraction_report(
    *,
    params: Any,
    counts: list[dict],
    failures: list[dict],
    failure_reasons: dict[str, int],
    files: dict,
    recipe: Any,
    timings: dict[str, float],
    spark_version: str,
    features_uri: str,
    listing_uri: str,
) -> dict:
    """The report after feature extraction (JSON-ready); ``recipe``
    (:class:`helpers.core.recipe.Recipe`) says how the features were made (the precision is the
    one that ran, which a CPU may have lowered)."""
    n_images = sum(c["images"] for c in counts)
    n_ok = sum(c["ok"] for c in counts)
    featurize_s = timings.get("featurize") or 0.0
    settings = {k: v for k, v in asdict(params).items() if not k.startswith("_")}
    for key in ("input_uri", "output_uri", "weights"):
        if settings.get(key):
            settings[key] = storage.redact(settings[key])
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "helpers_version": __version__,
        "spark_version": spark_version,
        "python_version": platform.python_version(),
        "parameters": settings,
        "images": {
            "total": n_images,
            "featurized": n_ok,
            "failed": n_images - n_ok,
            "labels": len({c["label"] for c in counts}),
            "per_label_split": counts,
        },
        "failures": {
            "count": n_images - n_ok,
            "by_reason": failure_reasons,
            "listed": failures,
        },
        # every entry under the input: found = featurized + failed + ignored
        "files": files,
        "model": {
            "name": recipe.spec.model_name,
            "weights": recipe.weights.kind,
            "weights_file": storage.redact(recipe.weights.uri) if recipe.weights.uri else None,
            "input_size": recipe.spec.input_size,
            "runtime": recipe.spec.runtime,
            "precision": recipe.spec.precision,
        },
        "timings_s": dict(timings),
        "throughput_images_per_s": round(n_images / featurize_s, 2) if featurize_s else None,
        "outputs": {
            "listing": storage.redact(listing_uri),
            "features": storage.redact(features_uri),
        },
    }


def reduction_report(
    reduction: Any, outputs: dict[str, str], timings: dict[str, float], features: dict
) -> dict:
    """The PCA step's report: k, variance, ratios, what features it reduced, its outputs."""
    kept = reduction.explained_variance_ratio[: reduction.k]
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "helpers_version": __version__,
        "features": features,
        "pca": {
            "k": reduction.k,
            "variance_threshold": reduction.variance_threshold,
            "explained_variance": round(reduction.explained_variance, 6),
            "explained_variance_ratio": [round(float(r), 8) for r in kept],
        },
        "timings_s": dict(timings),
        "outputs": {name: storage.redact(uri) for name, uri in outputs.items()},
    }


def write_report(report: dict, uri: str) -> None:
    """Write the report as indented JSON to a local path or S3 URI."""
    data = json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8")
    storage.write_bytes(uri, data, "application/json")
