"""Where each millisecond of an image goes inside a featurizing task, step by step.

    python benchmarks/image_profile.py                        # fast mode: OpenVINO, 96 px, fp32
    python benchmarks/image_profile.py --runtime tensorflow --size 224
    python benchmarks/image_profile.py --precision bf16 --images 2000

One process, as one Spark task runs the featurization (the pandas UDF of
``helpers/spark/featurize.py``), on the real Fruits-360 sample cycled to ``--images`` files.
Each step is timed alone, in the task's order, with the project's own functions:

- read: the file's bytes (``inputs.read_file``);
- decode: JPEG to RGB at the photo's own size (``images.decode_rgb``, no resize);
- resize: the extra time of decoding to the model's size (Fruits-360 photos are 100x100);
- Arrow to pandas: the task's batch of paths as Spark hands it to the UDF (an Arrow record
  batch to a pandas Series to a list);
- stack + preprocess: the batch's pixels into one float array, scaled as the backbone wants;
- inference: the runtime's call on a batch (``--batch``), per image;
- result to Arrow: the UDF's answer (features, error) into the Arrow struct Spark reads back;
- Parquet: the rows (path, label, features) written as Spark writes them (snappy).

Then the same files through ``inference.featurize_paths`` as the task runs them (reads and
decodes in threads while the model runs the previous batch): its time per image against the sum
of the steps says how much the threads overlap. Spark's share (scheduling, Python workers, the
JVM's Arrow and Parquet side) is the difference with ``make bench``'s featurize stage; the fixed
seconds around a run are ``benchmarks/fixed_cost.py``'s. The CPU is printed with the figures.
Writes ``image_profile.json`` and ``image_profile.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from helpers import config  # noqa: E402

ROOT = config.PROJECT_ROOT
sys.path.insert(0, str(Path(__file__).resolve().parent))
from featurize_bench import fruits_sample  # noqa: E402


def cpu_name() -> str:
    """The CPU's model name and whether it has AVX-512 (what decides TensorFlow's oneDNN)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                  if ln.startswith("model name")), "unknown CPU")  # fmt: skip
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                  if ln.startswith("flags")), [])  # fmt: skip
    wide = "AVX-512" if "avx512f" in flags else ("AVX2" if "avx2" in flags else "no AVX2")
    return f"{model}, {os.cpu_count()} cores, {wide}" + (", BF16" if "avx512_bf16" in flags else "")


def per_item_ms(step: Callable[[], object], items: int, repeats: int = 3) -> float:
    """The best of ``repeats`` timings of ``step`` (which handles ``items`` items), per item."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return 1000 * best / items


def model_fn(runtime: str, size: int, precision: str):
    """The runtime's ``batch -> features`` as a worker builds it."""
    from helpers.core import inference
    from helpers.core.recipe import FeatureSpec, resolve_weights

    spec = FeatureSpec(input_size=size, runtime=runtime, precision=precision)
    # one thread: a task slot's share of the cores, as tf_threads_per_task gives it
    return spec, inference.load_inference_fn(spec, resolve_weights(spec.backbone, None), 1)


def profile(files: list[Path], runtime: str, size: int, precision: str, batch: int) -> dict:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from helpers.core import images, inference, inputs

    spec, infer = model_fn(runtime, size, precision)
    backbone = spec.backbone
    paths = [f.as_uri() for f in files]
    n = len(paths)
    steps: dict[str, float] = {}

    data = [inputs.read_file(p) for p in paths]
    steps["read"] = per_item_ms(lambda: [inputs.read_file(p) for p in paths], n)
    native = images.probe(data[0])[:2]  # (width, height) as stored: Fruits-360 is 100x100
    decode = per_item_ms(lambda: [images.decode_rgb(d, native) for d in data], n)
    decode_resize = per_item_ms(lambda: [images.decode_rgb(d, backbone.input_size) for d in data],
                                n)  # fmt: skip
    steps["decode"] = decode
    steps["resize"] = max(decode_resize - decode, 0.0)
    arrow_paths = pa.RecordBatch.from_arrays([pa.array(paths)], names=["path"])
    steps["Arrow to pandas"] = per_item_ms(
        lambda: arrow_paths.to_pandas()["path"].tolist(), n, repeats=20
    )
    pixels = [images.decode_rgb(d, backbone.input_size) for d in data]
    batches = [pixels[i : i + batch] for i in range(0, n, batch)]
    steps["stack + preprocess"] = per_item_ms(
        lambda: [backbone.preprocess(np.stack(b)) for b in batches], n
    )
    ready = [backbone.preprocess(np.stack(b)) for b in batches]
    infer(ready[0])  # compile, warm up
    steps["inference"] = per_item_ms(lambda: [infer(b) for b in ready], n, repeats=2)
    feats = np.concatenate([infer(b) for b in ready])
    answer = pd.DataFrame({"features": list(feats), "error": [None] * n})
    struct = pa.struct([("features", pa.list_(pa.float32())), ("error", pa.string())])
    steps["result to Arrow"] = per_item_ms(
        lambda: pa.StructArray.from_arrays(
            [pa.array(answer["features"].tolist(), type=struct.field(0).type),
             pa.array(answer["error"], type=pa.string())], fields=list(struct)), n,
    )  # fmt: skip
    table = pa.table({"path": paths, "label": [f.parent.name for f in files],
                      "features": pa.array(list(feats), type=pa.list_(pa.float32()))})  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "part.parquet"
        steps["Parquet"] = per_item_ms(lambda: pq.write_table(table, target, compression="snappy"),
                                       n)  # fmt: skip
    threads = inputs.read_threads(paths)
    task = per_item_ms(
        lambda: inference.featurize_paths(backbone, infer, paths, batch, threads=threads), n,
        repeats=2,
    )  # fmt: skip
    return {"steps_ms": {k: round(v, 4) for k, v in steps.items()},
            "sum_ms": round(sum(steps.values()), 3), "task_ms": round(task, 3),
            "read_threads": threads}  # fmt: skip


def figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps_ms"]
    fig, ax = plt.subplots(figsize=(8, 4))
    names = list(steps)[::-1]
    ax.barh(names, [steps[k] for k in names], color="#4c72b0")
    for i, name in enumerate(names):
        ax.text(steps[name], i, f" {steps[name]:.2f} ms", va="center", fontsize=9)
    ax.set_xlabel("ms per image, one task (one thread)")
    ax.set_title(
        f"{result['mode']}: steps {result['sum_ms']:.2f} ms, the task with its read "
        f"threads {result['task_ms']:.2f} ms per image\n{result['cpu']}",
        fontsize=9,
    )
    ax.set_xlim(0, max(steps.values()) * 1.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="openvino", choices=["openvino", "tensorflow"])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--images", type=int, default=960, help="files (the sample, cycled)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--out", default=str(ROOT / "output" / "benchmarks"))
    args = parser.parse_args(argv)
    sample = sorted(fruits_sample().rglob("*.jpg"))
    files = [sample[i % len(sample)] for i in range(args.images)]
    result = profile(files, args.runtime, args.size, args.precision, args.batch)
    result.update(mode=f"{args.runtime} {args.size} px {args.precision}, batch {args.batch}",
                  cpu=cpu_name(), images=args.images)  # fmt: skip
    total = result["sum_ms"]
    print(f"{result['mode']} on {result['images']} files; {result['cpu']}")
    print(f"{'step':<22}{'ms/image':>10}{'share':>8}")
    for name, ms in result["steps_ms"].items():
        print(f"{name:<22}{ms:>10.3f}{100 * ms / total:>7.1f}%")
    print(f"{'sum of the steps':<22}{total:>10.3f}")
    print(f"{'the task (threads)':<22}{result['task_ms']:>10.3f}   "
          f"{result['read_threads']} read threads; one core's ceiling "
          f"{1000 / result['task_ms']:.0f} images/s")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "image_profile.json").write_text(json.dumps(result, indent=2))
    figure(result, out / "image_profile.png")
    print(f"wrote {out / 'image_profile.json'} and image_profile.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
