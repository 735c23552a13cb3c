"""Fruits! tooling, apart from the runtime package ``helpers``: the EMR launcher
(:mod:`fruits_tools.emr`), S3 staging (:mod:`fruits_tools.s3_staging`) and the sample maker
(:mod:`fruits_tools.sample_data`). ``python -m fruits_tools emr|s3|make-sample``."""

__version__ = "0.1.0"
