"""Fruits! image pipeline: list images, featurize them with a pretrained CNN inside Spark,
standardize and reduce them with PCA, write Parquet locally or on S3; then train and save a
recognizer (scaler + PCA + classifier) that answers photos without Spark.

Layers, each importing only those before it: ``defaults``/``config``/``storage``/``layout``
-> ``core`` (no Spark) -> ``spark`` (building blocks) -> ``steps`` -> ``faces``; ``observe``
watches the work beside them (see docs/architecture.md)."""

from helpers import _moved

__version__ = "0.1.0"

_moved.install()
