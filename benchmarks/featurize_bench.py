"""Featurization benchmark: the Spark chain against a plain TensorFlow loop, by dataset size.

    python benchmarks/featurize_bench.py                       # 500, 1000, 2000, 4000, 8000
    python benchmarks/featurize_bench.py --sizes 500 2000 --pca-rows 90000

For each size, a folder of that many images is made by cycling the real Fruits-360 sample;
the Spark chain (list -> decode -> resize -> MobileNetV2 -> Parquet) runs on ``local[N]`` with
the pipeline's defaults, while a sampler thread records the peak RSS of the driver (Python +
JVM) and of the Python workers. The plain loop runs the same model, in one process with all
cores, on the same preprocessed batches, with no I/O. Prints a table and a linear fit
(time = fixed overhead + per-image cost); writes a plot and a JSON of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from helpers import config, defaults
from helpers.core import images, inference
from helpers.core.backbones import get_backbone
from helpers.core.recipe import FeatureSpec, resolve_weights
from helpers.spark import featurize, ingest, reduce
from helpers.spark.session import get_spark

BATCH = defaults.BATCH_SIZE
SPEC = FeatureSpec()


def fruits_sample() -> Path:
    """The real Fruits-360 sample the benchmarks cycle; exits with a one-line error without it."""
    sample = config.fruits360_sample_dir()
    if sample is None:
        print("error: the Fruits-360 sample (../shared/fruits360-sample) is needed",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return sample


def make_dataset(target: Path, size: int, sample: Path) -> Path:
    """``size`` images in Fruits-360 layout, cycling the sample's files (hard links)."""
    files = sorted(sample.rglob("*.jpg"))
    for i in range(size):
        source = files[i % len(files)]
        folder = target / "Training" / source.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / f"{i:06d}_{source.name}"
        try:
            os.link(source, link)
        except OSError:
            shutil.copy(source, link)
    return target


class RssSampler:
    """Peak resident memory of a process (default: this one) with its JVM child, and of its
    Python workers (the largest one, and all together); ``timeline`` keeps every sample as
    ``(seconds, driver + JVM bytes, all workers' bytes)``."""

    def __init__(self, interval: float = 0.2, root: psutil.Process | None = None):
        self.interval, self.driver, self.worker, self.workers = interval, 0, 0, 0
        self.root = root or psutil.Process()
        self.timeline: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            try:
                driver, workers = self.root.memory_info().rss, 0
                children = self.root.children(recursive=True)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                break  # the measured process has ended
            for child in children:
                # Short-lived children (forked workers, shell helpers) may end between the
                # listing and the reading: skip them, keep the sample.
                try:
                    cmd = " ".join(child.cmdline())
                    rss = child.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
                if "pyspark.daemon" in cmd or "pyspark/worker" in cmd or "pyspark.worker" in cmd:
                    self.worker = max(self.worker, rss)
                    workers += rss
                elif "java" in cmd:
                    driver += rss
            self.driver = max(self.driver, driver)
            self.workers = max(self.workers, workers)
            self.timeline.append((time.perf_counter() - started, driver, workers))
            time.sleep(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def plain_loop(sample: Path, n: int, threads: int) -> float:
    """Images/s of the model alone: one process, ``threads`` TensorFlow threads, batches of
    already preprocessed pixels (decode excluded)."""
    backbone = get_backbone("mobilenet_v2")
    infer = inference.load_inference_fn("mobilenet_v2", resolve_weights(backbone), threads)
    files = sorted(sample.rglob("*.jpg"))[:BATCH]
    batch = backbone.preprocess(
        np.stack([images.decode_rgb(f.read_bytes(), backbone.input_size) for f in files])
    )
    infer(batch)  # build and warm up
    start = time.perf_counter()
    done = 0
    while done < n:
        infer(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def spark_run(
    dataset: Path, output: Path, master: str, conf: dict | None = None, spec: FeatureSpec = SPEC
) -> dict:
    """One featurization through Spark, in a fresh session; wall time and memory."""
    with RssSampler() as rss:
        start = time.perf_counter()
        settings = {"spark.ui.enabled": "false", **(conf or {})}
        spark = get_spark(master, app_name="featurize-bench", conf=settings)
        listed = ingest.list_images(spark, str(dataset), str(output) + ".listing")
        df = featurize.add_features(listed.images, spec, batch_size=BATCH)
        df.write.mode("overwrite").parquet(str(output))
        rows = spark.read.parquet(str(output)).count()
        wall = time.perf_counter() - start
        spark.stop()
    return {"rows": rows, "wall_s": wall, "driver_rss_mb": rss.driver / 2**20,
            "worker_rss_mb": rss.worker / 2**20}  # fmt: skip


def executors_run(dataset: Path, output: Path, size: int, spec: FeatureSpec = SPEC) -> list[dict]:
    """The same featurization on a standalone cluster (2 workers x 1 core on 127.0.0.1),
    with 1 then 2 executors."""
    sys.path.insert(0, str(config.PROJECT_ROOT))  # the tests' cluster helper, from a clone
    from tests.standalone import standalone_cluster

    results = []
    with standalone_cluster(workers=2, cores_per_worker=1) as (master, _):
        for executors in (1, 2):
            conf = {"spark.cores.max": str(executors), "spark.executor.cores": "1",
                    "spark.executor.memory": "2g"}  # fmt: skip
            run = spark_run(dataset, output, master, conf, spec)
            assert run["rows"] == size, run
            results.append({"executors": executors, "wall_s": run["wall_s"],
                            "images_per_s": size / run["wall_s"]})  # fmt: skip
    return results


def pca_run(rows: int, dim: int = 1280, master: str = "local[*]") -> dict:
    """StandardScaler + PCA (k from 0.95 of the variance) on synthetic features."""
    import pandas as pd
    from pyspark.sql import types as T

    spark = get_spark(master, app_name="pca-bench", conf={"spark.ui.enabled": "false"})
    schema = T.StructType([T.StructField("features", T.ArrayType(T.FloatType()))])

    def block(batches):
        for pdf in batches:
            rng = np.random.default_rng(int(pdf["id"].iloc[0]))
            # low-rank structure with decaying strength plus noise, like CNN features
            latent = rng.normal(size=(len(pdf), 64)) * (0.9 ** np.arange(64))
            z = latent @ np.random.default_rng(0).normal(size=(64, dim))
            x = np.maximum(z + rng.normal(scale=0.1, size=z.shape), 0).astype(np.float32)
            yield pd.DataFrame({"features": list(x)})

    data = spark.range(rows, numPartitions=max(2, rows // 10_000)).mapInPandas(block, schema)
    path = Path(tempfile.mkdtemp(prefix="pca-bench-")) / "features"
    data.write.parquet(str(path))
    features = spark.read.parquet(str(path))
    start = time.perf_counter()
    reduction = reduce.fit_reduction(features, variance_threshold=0.95)
    seconds = time.perf_counter() - start
    spark.stop()
    shutil.rmtree(path.parent)
    return {"rows": rows, "dim": dim, "k": reduction.k, "fit_s": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 1000, 2000, 4000, 8000])
    parser.add_argument("--master", default="local[*]")
    parser.add_argument("--pca-rows", type=int, default=90_000)
    parser.add_argument(
        "--executors-size",
        type=int,
        default=2000,
        help="images for the 1 vs 2 executors comparison (0: skip)",
    )
    parser.add_argument("--input-size", type=int, default=defaults.INPUT_SIZE)
    parser.add_argument("--runtime", default=defaults.RUNTIME, choices=defaults.RUNTIMES)
    parser.add_argument("--out", default=str(config.PROJECT_ROOT / "output" / "benchmarks"))
    args = parser.parse_args(argv)
    spec = FeatureSpec(input_size=args.input_size, runtime=args.runtime)
    mode = "default" if spec == SPEC else f"{spec.runtime}-{spec.input_size}"
    if len(args.sizes) < 2:
        parser.error("give at least two --sizes for the linear fit")
    sample = fruits_sample()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cores = psutil.cpu_count(logical=True)
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((x.split(":", 1)[1].strip() for x in cpuinfo if x.startswith("model name")), "?")
    print(f"machine: {cores} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB")

    plain = plain_loop(sample, n=max(args.sizes[0], 512), threads=cores)
    print(f"plain TensorFlow loop: {plain:.1f} images/s (model only, {cores} threads)")

    rows = []
    work = Path(tempfile.mkdtemp(prefix="featurize-bench-"))
    try:
        # Start the JVM once before measuring: every size then pays the same session start.
        spark_run(make_dataset(work / "warm-up", 64, sample), work / "out-warm-up", args.master)
        for size in args.sizes:
            dataset = make_dataset(work / f"data-{size}", size, sample)
            result = spark_run(dataset, work / f"out-{size}", args.master, spec=spec)
            assert result["rows"] == size, result
            result.update(size=size, images_per_s=size / result["wall_s"])
            result["ratio"] = result["images_per_s"] / plain
            rows.append(result)
            shutil.rmtree(dataset)
        scaling = []
        if args.executors_size:
            dataset = make_dataset(work / "data-executors", args.executors_size, sample)
            scaling = executors_run(dataset, work / "out-executors", args.executors_size, spec)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    sizes = np.array([r["size"] for r in rows], dtype=float)
    walls = np.array([r["wall_s"] for r in rows])
    per_image, fixed = np.polyfit(sizes, walls, 1)
    marginal = 1.0 / per_image
    print()
    print(
        f"{'images':>7} {'wall s':>8} {'img/s':>7} {'ratio':>6} {'driver MB':>10} {'worker MB':>10}"
    )
    for r in rows:
        print(f"{r['size']:>7} {r['wall_s']:>8.1f} {r['images_per_s']:>7.1f} {r['ratio']:>6.2f} "
              f"{r['driver_rss_mb']:>10.0f} {r['worker_rss_mb']:>10.0f}")  # fmt: skip
    print(
        f"\nlinear fit: time = {fixed:.1f} s + {per_image * 1000:.2f} ms x images "
        f"(marginal {marginal:.1f} images/s, {marginal / plain:.2f} x the plain loop)"
    )

    for run in scaling:
        print(f"standalone cluster, {run['executors']} executor(s) x 1 core: "
              f"{args.executors_size} images in {run['wall_s']:.1f} s, "
              f"{run['images_per_s']:.1f} images/s")  # fmt: skip

    pca = pca_run(args.pca_rows) if args.pca_rows else None
    if pca:
        print(
            f"PCA: {pca['rows']:,} x {pca['dim']} fitted in {pca['fit_s']:.1f} s (k = {pca['k']})"
        )

    summary = {
        "mode": mode,
        "plain_images_per_s": plain,
        "runs": rows,
        "fixed_s": fixed,
        "per_image_ms": per_image * 1000,
        "marginal_ratio": marginal / plain,
        "executors": scaling,
        "pca": pca,
    }
    (out / "featurize_bench.json").write_text(json.dumps(summary, indent=2))
    _plot(rows, plain, fixed, per_image, scaling, out / "featurize_bench.png")
    print(f"figures: {out / 'featurize_bench.json'}, {out / 'featurize_bench.png'}")
    return 0


def _plot(rows, plain, fixed, per_image, scaling, path: Path) -> None:
    import matplotlib.pyplot as plt

    sizes = [r["size"] for r in rows]
    fig, (left, right, third) = plt.subplots(1, 3, figsize=(15, 4))
    left.plot(sizes, [r["wall_s"] for r in rows], "o", label="measured")
    left.plot(sizes, [fixed + per_image * s for s in sizes], "-", label="linear fit")
    left.set_xlabel("images")
    left.set_ylabel("wall time (s)")
    left.legend()
    right.plot(sizes, [r["images_per_s"] for r in rows], "o-", label="Spark chain")
    right.axhline(plain, color="grey", ls="--", label="plain TF loop")
    right.set_xlabel("images")
    right.set_ylabel("images/s")
    right.legend()
    if scaling:
        third.bar([str(r["executors"]) for r in scaling], [r["images_per_s"] for r in scaling])
        third.set_xlabel("executors (1 core each, standalone cluster)")
        third.set_ylabel("images/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
