"""The backbone alone in each inference runtime: speed, agreement with Keras, probe accuracy.

    python benchmarks/runtimes_bench.py                      # sizes 224 and 96, one thread
    python benchmarks/runtimes_bench.py --sizes 128 --threads 2

Model only (pixels already decoded and preprocessed), as one Spark task runs it: one process,
``--threads`` inference threads, batches of 64. For each size:

- TensorFlow (Keras, oneDNN kernels on, as the project's workers run it): the reference;
- OpenVINO FP32 (the project's ``--runtime openvino``);
- ONNX Runtime FP32 (the same Keras function exported with tf2onnx; needs ``tf2onnx`` and
  ``onnxruntime``, which the project does not install: ``pip install tf2onnx onnxruntime``);
- OpenVINO INT8, post-training quantized with NNCF on 300 sample photos (``nncf``).

Every row reports images/s, the worst cosine of its features to Keras's on the 960 sample photos
the held-out accuracy of a logistic-regression probe on them (75/25 stratified split) and
of a one-shot cosine nearest neighbour (one reference photo per class).
Runtimes that are not installed are reported as such. Writes ``runtimes_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

import numpy as np  # noqa: E402

from helpers import config  # noqa: E402
from helpers.core import images  # noqa: E402
from helpers.core.backbones import get_backbone  # noqa: E402
from helpers.core.recipe import resolve_weights  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from featurize_bench import fruits_sample  # noqa: E402

BATCH = 64
CALIBRATION = 300


def photos(sample: Path, size: int, backbone) -> tuple[np.ndarray, np.ndarray]:
    """Every sample photo decoded, resized and preprocessed; and its label."""
    files = sorted(sample.rglob("*.jpg"))
    pixels = np.stack([images.decode_rgb(f.read_bytes(), (size, size)) for f in files])
    return backbone.preprocess(pixels.astype(np.float32)), np.array([f.parent.name for f in files])


def throughput(infer, batch: np.ndarray, seconds: float = 8.0) -> float:
    infer(batch)  # build, warm up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        infer(batch)
        done += len(batch)
    return done / (time.perf_counter() - start)


def features(infer, data: np.ndarray) -> np.ndarray:
    return np.concatenate([infer(data[i : i + BATCH]) for i in range(0, len(data), BATCH)])


def probe(feats: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, x_test, y_train, y_test = train_test_split(
        feats, labels, test_size=0.25, stratify=labels, random_state=0
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(model.fit(x_train, y_train).score(x_test, y_test))


def one_shot(feats: np.ndarray, labels: np.ndarray) -> float:
    """Cosine nearest neighbour with one reference photo per class (its first), scored on the
    others: a harder test than the probe, which every runtime saturates on this sample."""
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    classes, first = np.unique(labels, return_index=True)
    rest = np.setdiff1d(np.arange(len(labels)), first)
    guesses = classes[np.argmax(unit[rest] @ unit[first].T, axis=1)]
    return float(np.mean(guesses == labels[rest]))


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.min(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))


def keras_fn(backbone, weights: str, threads: int):
    import tensorflow as tf

    from helpers.core.backbones import build_model

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = build_model(backbone, weights)
    size = backbone.input_size[0]

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def infer(batch):
        return model(batch, training=False)

    return (lambda batch: infer(batch).numpy()), infer


def onnx_fn(tf_function, threads: int, folder: Path):
    import onnxruntime as ort
    import tf2onnx

    path = folder / "model.onnx"
    tf2onnx.convert.from_function(
        tf_function, input_signature=tf_function.input_signature, opset=17, output_path=str(path)
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def openvino_fn(ir: Path, threads: int):
    from helpers.core import runtimes

    return runtimes.load_openvino_fn(str(ir), "fp32", threads)


def int8_ir(ir: Path, calibration: np.ndarray, folder: Path) -> Path:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(ir))
    dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    quantized = nncf.quantize(model, dataset, subset_size=len(calibration))
    target = folder / f"int8_{ir.name}"
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


def makers(keras, tf_function, ir: Path, calibration: np.ndarray, threads: int, work: Path):
    """Runtime name -> a function building its ``batch -> features``."""
    return {
        "tensorflow fp32 (oneDNN)": lambda: keras,
        "openvino fp32": lambda: openvino_fn(ir, threads),
        "onnxruntime fp32": lambda: onnx_fn(tf_function, threads, work),
        "openvino int8 (NNCF)": lambda: openvino_fn(int8_ir(ir, calibration, work), threads),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 96])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(config.PROJECT_ROOT / "output" / "benchmarks"))
    args = parser.parse_args(argv)
    sample = fruits_sample()
    from helpers.core import runtimes

    rows = []
    work = Path(tempfile.mkdtemp(prefix="runtimes-bench-"))
    for size in args.sizes:
        backbone = get_backbone("mobilenet_v2").at_size(size)
        weights = resolve_weights(backbone)
        data, labels = photos(sample, size, backbone)
        batch = data[:BATCH]
        keras, tf_function = keras_fn(backbone, weights, args.threads)
        reference = features(keras, data)
        ir = runtimes.openvino_ir(backbone, weights)
        # Calibration photos: every third sample photo (a spread over the classes).
        calibration = data[:: max(1, len(data) // CALIBRATION)][:CALIBRATION]
        candidates = makers(keras, tf_function, ir, calibration, args.threads, work)
        for name, make in candidates.items():
            row = {"size": size, "runtime": name, "threads": args.threads}
            try:
                started = time.perf_counter()
                infer = make()
                row["prepare_s"] = round(time.perf_counter() - started, 1)
            except ImportError as err:
                row["missing"] = str(err)
                rows.append(row)
                print(f"{size:>4} {name:<26} not installed ({err})", flush=True)
                continue
            feats = features(infer, data)
            row.update(
                images_per_s=round(throughput(infer, batch), 1),
                max_abs_diff=float(np.max(np.abs(feats - reference))),
                min_cosine=round(min_cosine(feats, reference), 5),
                probe=round(probe(feats, labels), 4),
                one_shot=round(one_shot(feats, labels), 4),
            )
            rows.append(row)
            print(f"{size:>4} {name:<26} {row['images_per_s']:>7.1f} img/s  "
                  f"max|d| {row['max_abs_diff']:.2e}  cos>={row['min_cosine']:.4f}  "
                  f"probe {row['probe']:.4f}  1-shot {row['one_shot']:.4f}",
                  flush=True)  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtimes_bench.json").write_text(json.dumps(rows, indent=2))
    print(f"figures: {out / 'runtimes_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
