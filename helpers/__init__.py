"""Fruits! image pipeline: list images, featurize them with a pretrained CNN inside Spark,
standardize and reduce them with PCA, write Parquet locally or on S3; then train and save a
recognizer (scaler + PCA + classifier) that answers photos without Spark."""

__version__ = "0.1.0"
