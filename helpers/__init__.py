"""Fruits! image pipeline: list images, featurize them with a pretrained CNN inside Spark,
standardize and reduce them with PCA, and write Parquet locally or on S3."""

__version__ = "0.1.0"
