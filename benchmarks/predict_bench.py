"""How fast `predict` answers: loading once, then one photo at a time and in batches.

Usage: python benchmarks/predict_bench.py [--recognizer output/recognizer] [--photos DIR] [-n 50]

Needs a saved recognizer (``make run`` writes ``output/recognizer``) and photos (default: the
shared Fruits-360 sample). Prints a JSON summary; no Spark is started.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

SCRIPT_START = time.perf_counter()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from helpers import config  # noqa: E402
from helpers.core.predict import PhotoRecognizer, expand_photos  # noqa: E402
from helpers.layout import RECOGNIZER  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recognizer", default=str(Path(config.default_output()) / RECOGNIZER))
    parser.add_argument("--photos", default=str(config.fruits360_sample_dir() or "data_sample"))
    parser.add_argument("-n", type=int, default=50, help="photos answered one at a time")
    args = parser.parse_args()

    started = time.perf_counter()
    recognizer = PhotoRecognizer(args.recognizer)
    load_s = time.perf_counter() - started
    photos = expand_photos([args.photos])

    t0 = time.perf_counter()
    recognizer.predict(photos[:1])  # cold: the first photo after loading
    first_answer = time.perf_counter()
    cold_s = first_answer - t0
    single = []
    for photo in photos[: args.n]:
        t0 = time.perf_counter()
        recognizer.predict([photo])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    answers = recognizer.predict(photos)
    batched_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "recognizer": recognizer.metadata.get("classifier"),
                "script_start_to_first_answer_s": round(first_answer - SCRIPT_START, 2),
                "load_s": round(load_s, 2),
                "cold_first_photo_ms": round(cold_s * 1000, 1),
                "one_at_a_time_ms": {
                    "photos": len(single),
                    "median": round(statistics.median(single) * 1000, 1),
                    "max": round(max(single) * 1000, 1),
                },
                "batched": {
                    "photos": len(answers),
                    "seconds": round(batched_s, 2),
                    "ms_per_photo": round(batched_s / len(answers) * 1000, 1),
                    "errors": sum(a.error is not None for a in answers),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
