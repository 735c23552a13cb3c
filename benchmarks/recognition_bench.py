"""Plain and cluttered accuracy of each recognizer head, with augmentation on and off, and
what the augmentation costs.

Usage: python benchmarks/recognition_bench.py [--output DIR] [--copies 3] [--heads ...]

On the shared Fruits-360 sample (24 classes x 40 photos, stratified 75/25): runs the chain once
(features, PCA) unless ``DIR`` already holds it, then the recognition step for every head with
``--copies`` cluttered copies per training photo and with none. Each setting's cluttered
pictures are featurized once (the step reuses them across heads). Prints a table (README,
"What fruit is this?") and writes ``DIR/benchmarks/recognition_bench.{json,png}``: the figures
and a few cluttered test pictures with the default recognizer's answers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from featurize_bench import fruits_sample  # noqa: E402

from helpers import defaults  # noqa: E402
from helpers.layout import CLUTTERED, RECOGNIZER, RUN_REPORT, OutputLayout  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "output" / "recognition-bench"))
    parser.add_argument("--copies", type=int, default=defaults.AUGMENT_COPIES)
    parser.add_argument("--heads", nargs="+", default=list(defaults.HEADS))
    args = parser.parse_args()

    from helpers.spark.session import get_spark
    from helpers.steps import extraction as pipeline
    from helpers.steps import recognition as engine

    out = OutputLayout(args.output)
    spark = get_spark(None)
    try:
        if not Path(out.path(RUN_REPORT)).is_file():
            started = time.perf_counter()
            pipeline.run(pipeline.RunParams(str(fruits_sample()), args.output), spark)
            print(f"chain on the sample: {time.perf_counter() - started:.0f} s", flush=True)
        run_report = json.loads(Path(out.path(RUN_REPORT)).read_text())
        rows = []
        # measured afresh: the step reuses pictures made by an earlier run with the same plan
        shutil.rmtree(out.path(CLUTTERED), ignore_errors=True)  # a local folder
        # augmentation off first: the default recognizer at the end reuses the copies' pictures
        for copies in (0, args.copies):
            for head in args.heads:
                params = engine.RecognitionParams(
                    args.output, classifier=head, augment_copies=copies
                ).validate()
                started = time.perf_counter()
                report = engine.run_recognition(params, spark).report
                rows.append(_row(report, head, copies, time.perf_counter() - started))
                print(json.dumps(rows[-1]), flush=True)
        # the default recognizer last: the one left in the output, answered below
        default = engine.run_recognition(engine.RecognitionParams(args.output), spark).report
    finally:
        spark.stop()

    cost = _cost(rows, run_report, args.copies)
    _print(rows, default, cost)
    target = Path(args.output) / "benchmarks"
    target.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "default": _row(default, "auto", defaults.AUGMENT_COPIES, 0), **cost}
    (target / "recognition_bench.json").write_text(json.dumps(result, indent=2))
    _figure(args.output, default, target / "recognition_bench.png")
    print(f"wrote {target / 'recognition_bench.json'} and recognition_bench.png")


def _row(report: dict, head: str, copies: int, seconds: float) -> dict:
    classifier, cluttered, unknowns = report["classifier"], report["cluttered"], report["unknowns"]
    return {
        "head": head,
        "chosen": classifier["classifier"],
        "copies": copies,
        "k": classifier["k"],
        "plain_top1": classifier["accuracy"],
        "plain_top3": classifier["top3"],
        "cluttered_top1": cluttered["top1"],
        "cluttered_top3": cluttered["top3"],
        "worst": cluttered["worst_classes"],
        "validation_cluttered_top1": report["head_choice"]["scores"],
        "threshold": unknowns["threshold"],
        "unknown_below": unknowns["unknown_below_threshold"],
        "cluttered_below": unknowns["cluttered_below_threshold"],
        "cluttered_pictures_s": report["timings_s"]["cluttered_pictures"],
        "pictures": report["split"]["augmented_copies"],
        "all_pictures": report["split"]["augmented_copies"]
        + report["cluttered"]["pictures"]
        + 2 * report["unknowns"]["pictures"],
        "seconds": round(seconds, 1),
    }


def _cost(rows: list[dict], run_report: dict, copies: int) -> dict:
    """Extra featurization of the copies: pictures/s against the plain features' images/s."""
    first = next(r for r in rows if r["copies"] == copies)
    # every picture of the setting (training copies, evaluation, no fruit) in one job
    rate = first["all_pictures"] / first["cluttered_pictures_s"]
    rate_plain = run_report.get("throughput_images_per_s")
    return {
        "training_copies": first["pictures"],
        "pictures_made": first["all_pictures"],
        "cluttered_featurize_s": first["cluttered_pictures_s"],
        "cluttered_pictures_per_s": round(rate, 1),
        "plain_images_per_s": rate_plain,
        "extra_minutes_for_90k_photos": round(90_000 * copies / rate / 60, 1),
    }


def _print(rows: list[dict], default: dict, cost: dict) -> None:
    print("\n| head | copies | k | plain top-1 | plain top-3 | cluttered top-1 | cluttered top-3 |"
          " no fruit under threshold |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['head']} | {r['copies']} | {r['k']} | {r['plain_top1']:.3f} | "
              f"{r['plain_top3']:.3f} | {r['cluttered_top1']:.3f} | {r['cluttered_top3']:.3f} | "
              f"{r['unknown_below']:.2f} |")  # fmt: skip
    chosen = default["classifier"]["classifier"]
    print(f"\ndefault (auto): {chosen}, validation scores {default['head_choice']['scores']}")
    print(f"augmentation cost: {json.dumps(cost)}")


def _figure(output: str, report: dict, target: Path) -> None:
    from helpers.core.predict import PhotoRecognizer
    from helpers.faces import showcase
    from helpers.observe import plots

    recognizer = PhotoRecognizer(OutputLayout(output).path(RECOGNIZER))
    examples = report["cluttered"]["examples"]
    pictures, answers = showcase.cluttered_examples(examples, recognizer)
    fig = showcase.answers_figure(pictures, answers, [e["label"] for e in examples])
    target.write_bytes(plots.figure_png(fig))


if __name__ == "__main__":
    main()
