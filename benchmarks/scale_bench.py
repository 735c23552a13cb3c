"""``python -m helpers run`` at scale on this machine: wall time, time per stage, memory.

    python benchmarks/scale_bench.py                          # 10,000 and 90,000 images
    python benchmarks/scale_bench.py --sizes 10000 --modes openvino-128

For each size, a folder of that many images is made by cycling the real Fruits-360 sample;
each mode (``benchmarks/modes_bench.py``'s names) runs the whole command while a sampler
records the resident memory of the driver (Python + JVM) and of all Python workers together,
every 0.2 s. Memory is flat when the peak of the run's second half is within 10 % of the first
half's. Then, for the sizing model's self-check, each mode runs ``--executors-images`` images
on a standalone cluster on 127.0.0.1 (2 workers x 1 core) with 1 and 2 executors. Writes
``scale_bench.json`` (the sizing model's input, ``benchmarks/sizing.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from helpers import config

ROOT = config.PROJECT_ROOT
sys.path.insert(0, str(Path(__file__).resolve().parent))
from featurize_bench import RssSampler, fruits_sample, make_dataset  # noqa: E402
from modes_bench import MODES  # noqa: E402


def run(dataset: Path, out: Path, options: list[str], env: dict | None = None) -> dict:
    command = [sys.executable, "-m", "helpers", "run", "--input", str(dataset),
               "--output", str(out), *options]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT), **(env or {})}
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with RssSampler(root=psutil.Process(process.pid)) as rss:
        stdout, stderr = process.communicate()
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"helpers run failed:\n{stderr[-3000:]}")
    report = json.loads((out / "run_report.json").read_text())
    pca = json.loads((out / "pca_report.json").read_text())
    half = len(rss.timeline) // 2
    first, second = rss.timeline[:half], rss.timeline[half:]

    def peak(samples, i):
        return max((s[i] for s in samples), default=0) / 2**20

    return {
        "images": report["images"]["total"],
        "wall_s": round(wall, 1),
        "images_per_s": round(report["images"]["total"] / wall, 1),
        "stages_s": {**report["timings_s"], **pca["timings_s"]},
        "k": pca["pca"]["k"],
        "driver_peak_mb": round(rss.driver / 2**20),
        "workers_peak_mb": round(rss.workers / 2**20),
        "one_worker_peak_mb": round(rss.worker / 2**20),
        "halves_peak_mb": {
            "driver": [round(peak(first, 1)), round(peak(second, 1))],
            "workers": [round(peak(first, 2)), round(peak(second, 2))],
        },
    }


def executors_runs(dataset: Path, work: Path, mode: str) -> list[dict]:
    """The whole command on a standalone cluster on 127.0.0.1 (2 workers x 1 core), with 1
    then 2 executors of 1 core: what the sizing model predicts for more than one executor."""
    sys.path.insert(0, str(ROOT))  # the tests' cluster helper, from a clone
    from tests.standalone import standalone_cluster

    results = []
    with standalone_cluster(workers=2, cores_per_worker=1) as (master, _):
        for executors in (1, 2):
            # PySpark passes these to spark-submit when it starts the driver's JVM.
            submit = (f"--conf spark.cores.max={executors} --conf spark.executor.cores=1 "
                      "--conf spark.executor.memory=2g pyspark-shell")  # fmt: skip
            options = [*MODES[mode], "--master", master]
            out = work / f"out-{mode}-executors-{executors}"
            result = run(dataset, out, options, {"PYSPARK_SUBMIT_ARGS": submit})
            result.update(mode=mode, executors=executors)
            results.append(result)
            print(json.dumps(result), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 90_000])
    parser.add_argument("--modes", nargs="+", default=["default", "openvino-96"],
                        choices=list(MODES))  # fmt: skip
    parser.add_argument("--executors-images", type=int, default=2000,
                        help="images, 1- vs 2-executor standalone runs (0: none)")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "output" / "benchmarks"))
    args = parser.parse_args(argv)
    sample = fruits_sample()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        for size in args.sizes:
            dataset = make_dataset(work / f"images-{size}", size, sample)
            for mode in args.modes:
                result = run(dataset, work / f"out-{mode}-{size}", MODES[mode])
                result["mode"] = mode
                results.append(result)
                print(json.dumps(result), flush=True)
                shutil.rmtree(work / f"out-{mode}-{size}")
            shutil.rmtree(dataset)
        if args.executors_images:
            dataset = make_dataset(work / "images-executors", args.executors_images, sample)
            for mode in args.modes:
                results += executors_runs(dataset, work, mode)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(f"\n{'mode':<14} {'where':<14} {'images':>7} {'wall':>8} {'img/s':>6} {'featurize':>9} "
          f"{'reduce':>7} {'driver MB':>10} {'workers MB':>11}")  # fmt: skip
    for r in results:
        minutes, seconds = divmod(r["wall_s"], 60)
        where = f"{r['executors']} executor(s)" if "executors" in r else "local[*]"
        print(f"{r['mode']:<14} {where:<14} {r['images']:>7} {int(minutes):>3}m{seconds:04.1f}s "
              f"{r['images_per_s']:>6.0f} {r['stages_s']['featurize']:>8.1f}s "
              f"{r['stages_s'].get('reduce', 0):>6.1f}s {r['driver_peak_mb']:>10} "
              f"{r['workers_peak_mb']:>11}")  # fmt: skip
    for mode in args.modes:
        peaks = [(r["images"], r["driver_peak_mb"], r["workers_peak_mb"])
                 for r in results if r["mode"] == mode and "executors" not in r]  # fmt: skip
        if len(peaks) > 1:
            (n0, d0, w0), (n1, d1, w1) = peaks[0], peaks[-1]
            print(f"{mode}: {n0} -> {n1} images: driver peak x{d1 / d0:.2f}, "
                  f"workers peak x{w1 / w0:.2f}")  # fmt: skip
    (out / "scale_bench.json").write_text(json.dumps(results, indent=2))
    print(f"figures: {out / 'scale_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
