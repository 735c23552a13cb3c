"""Driver memory of listing a large input: peak RSS of :func:`helpers.core.inputs.write_listing`.

Makes ``--files`` small files in class folders (a few non-images among them), then lists them
in a fresh process and prints the process's peak resident memory above its baseline (after
imports) and the time taken. The listing keeps one chunk of entries as Python objects and the
compressed Parquet file, so the peak should grow with the file count by a few bytes per file,
not by the ~1 KB a Python object per entry would cost.

    python benchmarks/listing_bench.py --files 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MEASURE = textwrap.dedent(
    """
    import json, resource, sys, time
    from helpers.core import inputs
    import pyarrow.parquet  # imported before the baseline: part of any run

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    summary = inputs.write_listing(sys.argv[1], sys.argv[2])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "found": summary.found, "to_read": summary.to_read, "ignored": summary.ignored,
        "seconds": round(seconds, 2), "baseline_rss_mb": round(base / 1024, 1),
        "peak_rss_mb": round(peak / 1024, 1), "growth_mb": round((peak - base) / 1024, 1),
    }))
    """
)


def make_files(root: Path, count: int, classes: int = 100) -> None:
    for i in range(count):
        folder = root / "Training" / f"Class {i % classes:03d}"
        if i < classes:
            folder.mkdir(parents=True, exist_ok=True)
        name = f"{i}_100.jpg" if i % 50 else f"{i}_notes.txt"
        (folder / name).write_bytes(b"")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="listing-bench-") as tmp:
        root = Path(tmp) / "in"
        start = time.perf_counter()
        make_files(root, args.files)
        print(f"made {args.files} files in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        done = subprocess.run(
            [sys.executable, "-c", MEASURE, str(root), str(Path(tmp) / "listing")],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = json.loads(done.stdout)
        result["listing_mb"] = round(
            (Path(tmp) / "listing" / "part-00000.parquet").stat().st_size / 2**20, 2
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
