"""Speed and quality of every featurization mode, in one run on the same images (``make bench``):

    python benchmarks/modes_bench.py                  # 7,200 images (the sample, cycled)
    python benchmarks/modes_bench.py --images 2000 --modes default openvino-128

Runs, one after the other on the same folder:

- the plain Keras-224 loop: one process, Pillow decode + resize, MobileNetV2 as a
  ``tf.function``, batches of 64; timed from the first file read (model already built); then
  the same with TensorFlow's oneDNN kernels, which the project's TensorFlow workers turn on;
- the reference approach of published solutions (``benchmarks/reference_approach.py``);
- Spark's own DL inference API, ``predict_batch_udf``, with the plain loop's model and images
  (``benchmarks/predict_batch_udf_approach.py``);
- ``python -m helpers run`` as a user runs it (JVM start, listing, features, PCA, reports),
  in the default mode and in each fast mode (input size x runtime x precision).

For every mode: wall time, images/s, the ratio to the plain loop, and the quality of its
features on the 960 distinct sample photos: a logistic-regression probe (75/25 stratified
split), one-shot nearest neighbour (one reference photo per class), and the same probe on the
held-out photos pasted onto random textures. Writes a JSON of the figures and a plot.
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

import numpy as np
import pandas as pd
import psutil

from helpers import config, defaults

ROOT = config.PROJECT_ROOT
sys.path.insert(0, str(ROOT))  # tests.imagefactory's textures, from a clone
sys.path.insert(0, str(Path(__file__).resolve().parent))
from featurize_bench import fruits_sample, make_dataset  # noqa: E402

#: mode name -> ``helpers run`` options
MODES: dict[str, list[str]] = {
    "default": [],
    "tensorflow-128": ["--input-size", "128"],
    "tensorflow-96": ["--input-size", "96"],
    "openvino-224": ["--runtime", "openvino"],
    "openvino-160": ["--runtime", "openvino", "--input-size", "160"],
    "openvino-128": ["--runtime", "openvino", "--input-size", "128"],
    "openvino-96": ["--runtime", "openvino", "--input-size", "96"],
    "openvino-128-bf16": ["--runtime", "openvino", "--input-size", "128", "--precision", "bf16"],
}


def _option(options: list[str], name: str, default):
    return type(default)(options[options.index(name) + 1]) if name in options else default


def plain_keras_loop(dataset: Path, out: Path, onednn: bool = False) -> dict:
    """The plain loop in a fresh process, with TensorFlow's default kernels (or oneDNN's, as
    the project's workers use them); its features are kept for the probe."""
    code = f"""
import json, os, time
import numpy as np, pandas as pd
from pathlib import Path
from PIL import Image
import keras, tensorflow as tf
from helpers.core.backbones import get_backbone
from helpers.core.recipe import Recipe, resolve_weights
files = sorted(str(p) for p in Path({str(dataset)!r}).rglob("*.jpg"))
model = keras.applications.MobileNetV2(include_top=False, pooling="avg", input_shape=(224, 224, 3),
    weights=resolve_weights(get_backbone("mobilenet_v2")))
infer = tf.function(lambda x: model(x, training=False),
                    input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])
infer(np.zeros((64, 224, 224, 3), np.float32))
start = time.perf_counter()
features = []
for i in range(0, len(files), 64):
    batch = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224)), np.float32)
                      for f in files[i:i + 64]])
    features.extend(infer(keras.applications.mobilenet_v2.preprocess_input(batch)).numpy())
seconds = time.perf_counter() - start
pd.DataFrame({{"path": files, "features": features}}).to_parquet({str(out)!r})
print(json.dumps({{"images": len(files), "seconds": seconds}}))
"""
    done = _run([sys.executable, "-c", code], {"TF_ENABLE_ONEDNN_OPTS": "1" if onednn else ""})
    result = json.loads(done.splitlines()[-1])
    return {"images": result["images"], "wall_s": result["seconds"], "features": out}


def reference(dataset: Path, out: Path) -> dict:
    done = _run([sys.executable, str(ROOT / "benchmarks" / "reference_approach.py"),
                 str(dataset), str(out)])  # fmt: skip
    result = json.loads(done.splitlines()[-1])
    return {"images": result["images"], "wall_s": result["wall_s"], "features": out}


def spark_predict_batch_udf(dataset: Path, out: Path) -> dict:
    done = _run([sys.executable, str(ROOT / "benchmarks" / "predict_batch_udf_approach.py"),
                 str(dataset), str(out)])  # fmt: skip
    result = json.loads(done.splitlines()[-1])
    return {"images": result["images"], "wall_s": result["wall_s"], "features": out}


def helpers_run(dataset: Path, out: Path, options: list[str]) -> dict:
    """``python -m helpers run`` as a user runs it; wall time of the whole command."""
    command = [sys.executable, "-m", "helpers", "run", "--input", str(dataset),
               "--output", str(out), *options]  # fmt: skip
    start = time.perf_counter()
    done = _run(command)
    wall = time.perf_counter() - start
    summary = json.loads(done[done.index("{") :])
    report = json.loads((out / "run_report.json").read_text())
    return {
        "images": summary["images"],
        "wall_s": wall,
        "featurize_s": report["timings_s"]["featurize"],
        "precision_ran": report["model"]["precision"],
        "features": out / "features",
    }


def _run(command: list[str], extra_env: dict[str, str] | None = None) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    for name, value in (extra_env or {}).items():
        if value:
            env[name] = value
        else:
            env.pop(name, None)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def _distinct(features_uri: Path, n_distinct: int) -> pd.DataFrame:
    """The rows of the first pass over the sample (file names ``NNNNNN_<name>``, N < n)."""
    frame = pd.read_parquet(features_uri, columns=["path", "features"])
    names = frame["path"].str.rsplit("/", n=1).str[-1]
    index = names.str[:6].astype(int)
    frame = frame[index < n_distinct].assign(index=index[index < n_distinct])
    frame["label"] = frame["path"].str.rsplit("/", n=2).str[-2]
    return frame.sort_values("index").reset_index(drop=True)


def probe(frame: pd.DataFrame) -> dict:
    """Logistic-regression probe (75/25 stratified split) and one-shot cosine neighbour."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.stack(frame["features"].to_numpy())
    y = frame["label"].to_numpy()
    train, test = train_test_split(
        np.arange(len(y)), test_size=0.25, stratify=y, random_state=defaults.SEED
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(x[train], y[train])
    accuracy = float(model.score(x[test], y[test]))
    labels = sorted(set(y))
    shots = [train[y[train] == label][0] for label in labels]
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    nearest = (unit[test] @ unit[shots].T).argmax(axis=1)
    one_shot = float(np.mean(np.asarray(labels)[nearest] == y[test]))
    return {"probe": accuracy, "one_shot": one_shot, "model": model, "test": test}


def textured_probe(frame: pd.DataFrame, fitted: dict, options: list[str], weights: str) -> float:
    """The probe's held-out photos pasted onto random textures, featurized by the mode's own
    spec, scored by the probe trained on its plain features."""
    from helpers.core import inference
    from helpers.core.recipe import FeatureSpec
    from tests.imagefactory import on_textured_background

    spec = FeatureSpec(
        input_size=_option(options, "--input-size", defaults.INPUT_SIZE),
        runtime=_option(options, "--runtime", defaults.RUNTIME),
        precision=_option(options, "--precision", defaults.PRECISION),
    )
    infer = inference.load_inference_fn(spec, weights, psutil.cpu_count())
    rows = frame.iloc[fitted["test"]]
    photos = [
        on_textured_background(Path(p.removeprefix("file:")).read_bytes(), seed=i)
        for i, p in enumerate(rows["path"])
    ]
    out = inference.featurize_batch(spec.backbone, infer, photos, defaults.BATCH_SIZE)
    return float(fitted["model"].score(np.stack(out["features"]), rows["label"].to_numpy()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=7200)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--no-reference", action="store_true", help="skip the reference approach")
    parser.add_argument("--no-predict-batch-udf", action="store_true",
                        help="skip Spark's predict_batch_udf row")  # fmt: skip
    parser.add_argument("--no-onednn-loop", action="store_true",
                        help="skip the plain loop with TensorFlow's oneDNN kernels")  # fmt: skip
    parser.add_argument("--out", default=str(ROOT / "output" / "benchmarks"))
    args = parser.parse_args(argv)
    sample = fruits_sample()
    from helpers.core import runtimes
    from helpers.core.backbones import get_backbone
    from helpers.core.recipe import resolve_weights

    modes = list(args.modes)
    if "openvino-128-bf16" in modes and runtimes.effective_precision("bf16")[1]:
        print(f"openvino-128-bf16: skipped, {runtimes.effective_precision('bf16')[1]}")
        modes.remove("openvino-128-bf16")
    weights = resolve_weights(get_backbone("mobilenet_v2"))
    n_distinct = len(list(sample.rglob("*.jpg")))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               "?")  # fmt: skip
    print(f"machine: {psutil.cpu_count()} cores ({cpu}); {args.images} images "
          f"({n_distinct} distinct, cycled)")  # fmt: skip

    work = Path(tempfile.mkdtemp(prefix="modes-bench-"))
    rows: list[dict] = []
    try:
        dataset = make_dataset(work / "images", args.images, sample)
        runs = [("plain Keras-224 loop", lambda: plain_keras_loop(dataset, work / "plain.parquet"),
                 [])]  # fmt: skip
        if not args.no_onednn_loop:
            onednn = work / "plain-onednn.parquet"
            runs.append(("plain loop, oneDNN on",
                         lambda: plain_keras_loop(dataset, onednn, True), []))  # fmt: skip
        if not args.no_reference:
            runs.append(("reference approach", lambda: reference(dataset, work / "reference"), []))
        if not args.no_predict_batch_udf:
            runs.append(("Spark predict_batch_udf",
                         lambda: spark_predict_batch_udf(dataset, work / "pbu"), []))  # fmt: skip
        for mode in modes:
            runs.append(
                (mode, lambda m=mode: helpers_run(dataset, work / m, MODES[m]), MODES[mode])
            )
        for name, measure, options in runs:
            result = measure()
            assert result["images"] == args.images, (name, result)
            frame = _distinct(result.pop("features"), n_distinct)
            fitted = probe(frame)
            result.update(
                mode=name,
                options=" ".join(options),
                images_per_s=args.images / result["wall_s"],
                probe=fitted["probe"],
                one_shot=fitted["one_shot"],
                textured=textured_probe(frame, fitted, options, weights),
            )
            rows.append(result)
            print(f"  {name}: {result['wall_s']:.1f} s, {result['images_per_s']:.1f} images/s, "
                  f"probe {result['probe']:.4f}", flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)

    plain = rows[0]["images_per_s"]
    print(f"\n{'mode':<22} {'wall s':>7} {'img/s':>7} {'x plain':>8} {'probe':>7} "
          f"{'1-shot':>7} {'texture':>8}")  # fmt: skip
    for r in rows:
        r["ratio"] = r["images_per_s"] / plain
        print(f"{r['mode']:<22} {r['wall_s']:>7.1f} {r['images_per_s']:>7.1f} {r['ratio']:>8.2f} "
              f"{r['probe']:>7.4f} {r['one_shot']:>7.3f} {r['textured']:>8.3f}")  # fmt: skip
    print(
        "plain loop: decode + model only, model built beforehand; every other row: the whole "
        "command, session start included"
    )
    (out / "modes_bench.json").write_text(json.dumps(rows, indent=2))
    _plot(rows, out / "modes_bench.png")
    print(f"figures: {out / 'modes_bench.json'}, {out / 'modes_bench.png'}")
    return 0


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (speed, quality) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["mode"] for r in rows]
    ratios = [r["ratio"] for r in rows]
    speed.barh(names, ratios, color="tab:blue")
    for line, style in ((1.0, ":"), (3.0, "--")):
        speed.axvline(line, color="grey", linestyle=style)
    speed.set_xlabel("images/s end to end, x the plain Keras-224 loop")
    speed.invert_yaxis()
    quality.scatter(ratios, [r["probe"] for r in rows], label="probe")
    quality.scatter(ratios, [r["textured"] for r in rows], marker="x", label="probe, textured")
    for r in rows:
        quality.annotate(r["mode"], (r["ratio"], r["probe"]), fontsize=7)
    quality.set_xlabel("x the plain loop")
    quality.set_ylabel("held-out accuracy")
    quality.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
