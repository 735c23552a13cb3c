"""A PySpark application that says where its Python comes from, on the driver and inside tasks.

Submitted by the shared-cluster rehearsal (tests/test_emr_rehearsal.py) with the environment
archive: each line ``PROBE {json}`` on the driver's stdout describes one side (the driver, or
one task per slot): the interpreter, the working folder, ``sys.path`` and the file each package
was imported from.
"""

from __future__ import annotations

import json
import sys

PACKAGES = ("helpers", "numpy", "pyarrow", "tensorflow", "openvino")


def where(side: str) -> dict:
    import importlib
    import os

    found = {"side": side, "cwd": os.getcwd(), "executable": sys.executable,
             "prefix": sys.prefix, "base_prefix": sys.base_prefix, "path": list(sys.path),
             "version": ".".join(map(str, sys.version_info[:3])), "files": {}}  # fmt: skip
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in PACKAGES:
        try:
            found["files"][name] = importlib.import_module(name).__file__
        except ImportError as err:
            found["files"][name] = f"ImportError: {err}"
    import pyspark

    found["files"]["pyspark"] = pyspark.__file__
    return found


def main() -> int:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("fruits-environment-probe").getOrCreate()
    slots = 2
    tasks = (
        spark.sparkContext.parallelize(range(slots), slots)
        .map(lambda i: json.dumps(where(f"task {i}")))
        .collect()
    )
    print("PROBE " + json.dumps(where("driver")), flush=True)
    for line in tasks:
        print("PROBE " + line, flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
