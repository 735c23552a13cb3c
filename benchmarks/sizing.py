"""EMR sizing model: predicted wall time and cost of a run, from this machine's measurements.

    python benchmarks/sizing.py   # reads output/benchmarks/{modes,scale,featurize}_bench.json

Model, per mode (default, fast):

    wall(N images, n core nodes of v vCPUs) = F + N / (n * v * r) + S
    cost = (n + 1 primary) * (EC2 + EMR price per hour) * (wall + start) / 3600

- ``F`` fixed cost and ``r`` images/s per vCPU: the linear fit of ``helpers run``'s wall time
  over two sizes measured here (``modes_bench.json`` at 7,200, ``scale_bench.json`` at 90,000);
- the rate scales with the vCPUs: the images are independent and the driver's own work (the
  listing, the PCA's solve) is in ``F``. ``r`` is measured with both cores busy, so it already
  pays for two workers sharing a machine;
- ``S`` the EMR step's own start (YARN application, cluster deploy mode) and ``start`` the
  cluster's provisioning and bootstrap, both inputs (options), not measured here;
- prices are inputs too (defaults: approximate on-demand list prices; set your region's).

The model checks itself on what can be measured here: with each mode's ``F`` and ``r`` it
predicts the whole command on a standalone cluster with 1 and 2 executors of 1 core
(``scale_bench.py``'s standalone runs) and prints the error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from helpers import config

ROOT = config.PROJECT_ROOT

#: instance type -> (vCPUs, EC2 $/h, EMR $/h): inputs, approximate on-demand list prices.
INSTANCES = {"m5.xlarge": (4, 0.192, 0.048), "c5.2xlarge": (8, 0.34, 0.085)}
SIZES = (90_000, 1_000_000, 10_000_000)
NODES = (2, 4, 8, 16)


def fit(points: list[tuple[int, float]], cores: int) -> tuple[float, float]:
    """``(F seconds, r images/s per core)`` from ``(images, wall seconds)`` at two sizes."""
    (n0, t0), (n1, t1) = sorted(points)[0], sorted(points)[-1]
    per_image = (t1 - t0) / (n1 - n0)
    return t0 - n0 * per_image, 1.0 / per_image / cores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench-dir", default=str(ROOT / "output" / "benchmarks"))
    parser.add_argument("--cores", type=int, default=2, help="cores of the measuring machine")
    parser.add_argument("--step-start-s", type=float, default=30.0,
                        help="an EMR step's own start, YARN cluster mode (input)")  # fmt: skip
    parser.add_argument("--cluster-start-min", type=float, default=10.0,
                        help="cluster provisioning + bootstrap, billed (input)")  # fmt: skip
    parser.add_argument("--modes", nargs="+", default=["default", "openvino-96"])
    args = parser.parse_args(argv)
    bench = Path(args.bench_dir)
    try:
        modes = {r["mode"]: r for r in json.loads((bench / "modes_bench.json").read_text())}
        scale = json.loads((bench / "scale_bench.json").read_text())
    except FileNotFoundError as err:
        print(f"error: {err.filename} missing: run make bench first", file=sys.stderr)
        return 2

    inputs = {}
    for mode in args.modes:
        points = [(modes[mode]["images"], modes[mode]["wall_s"])]
        points += [(r["images"], r["wall_s"]) for r in scale
                   if r["mode"] == mode and "executors" not in r]  # fmt: skip
        if len(points) < 2:
            print(
                f"error: {mode}: one size measured; run benchmarks/scale_bench.py", file=sys.stderr
            )
            return 2
        fixed, rate = fit(points, args.cores)
        inputs[mode] = (fixed, rate)
        print(f"{mode}: F = {fixed:.1f} s fixed, r = {rate:.1f} images/s per vCPU "
              f"(from {', '.join(f'{n:,} in {t:.0f} s' for n, t in sorted(points))})")  # fmt: skip

    # Self-check: the whole command on the standalone cluster, 1 and 2 executors, predicted.
    checks = [r for r in scale if "executors" in r and r["mode"] in inputs]
    if not checks:
        print("self-check skipped: no standalone runs in scale_bench.json (scale_bench.py "
              "--executors-images)")  # fmt: skip
    for run in sorted(checks, key=lambda r: (r["mode"], r["executors"])):
        fixed, rate = inputs[run["mode"]]
        predicted = fixed + run["images"] / (run["executors"] * rate)
        error = (predicted / run["wall_s"] - 1) * 100
        print(f"self-check, {run['mode']}: {run['executors']} executor(s) x 1 core, "
              f"{run['images']:,} images: predicted {predicted:.1f} s, measured "
              f"{run['wall_s']:.1f} s ({error:+.0f} %)")  # fmt: skip

    rows = []
    print(f"\n{'mode':<13} {'instance':<11} {'nodes':>5} " +
          " ".join(f"{n:>18,}" for n in SIZES))  # fmt: skip
    for mode, (fixed, rate) in inputs.items():
        for instance, (vcpus, ec2, emr) in INSTANCES.items():
            for nodes in NODES:
                cells = []
                for n in SIZES:
                    wall = fixed + n / (nodes * vcpus * rate) + args.step_start_s
                    cost = (nodes + 1) * (ec2 + emr) * (wall + args.cluster_start_min * 60) / 3600
                    rows.append({"mode": mode, "instance": instance, "nodes": nodes,
                                 "images": n, "wall_s": wall, "cost_usd": cost})  # fmt: skip
                    cells.append(f"{_duration(wall):>9} ${cost:>7.2f}")
                print(f"{mode:<13} {instance:<11} {nodes:>5} " + " ".join(cells))
    serverless_rows = _serverless(inputs, args.step_start_s)
    (bench / "sizing.json").write_text(json.dumps(
        {"inputs": inputs, "rows": rows, "serverless": serverless_rows}, indent=2))  # fmt: skip
    print(
        f"\nwall = F + N / (nodes x vCPUs x r) + {args.step_start_s:.0f} s step start; "
        f"cost adds {args.cluster_start_min:.0f} min of cluster start, primary node included"
    )
    return 0


def _serverless(inputs: dict, start_s: float, region: str = "us-east-1") -> list[dict]:
    """The same runs on EMR Serverless: executors of 4 vCPU / 16 GB (m5.xlarge's size) and a
    driver of the same size, billed from the dated rates in emr/prices.json; no cluster start
    to pay for, the job run's own start counted like a step's."""
    from fruits_tools import serverless

    rows = []
    print(f"\nEMR Serverless, {region} (workers of 4 vCPU, 16 GB; driver included)")
    print(f"{'mode':<13} {'workers':>7} " + " ".join(f"{n:>18,}" for n in SIZES))
    for mode, (fixed, rate) in inputs.items():
        for workers in NODES:
            cells = []
            for n in SIZES:
                found = serverless.estimate(n, rate, fixed + start_s, region, workers)
                rows.append({"mode": mode, "workers": workers, "images": n,
                             "wall_s": found["wall_s"], "cost_usd": found["total"]})  # fmt: skip
                cells.append(f"{_duration(found['wall_s']):>9} ${found['total']:>7.2f}")
            print(f"{mode:<13} {workers:>7} " + " ".join(cells))
    print(f"(EMR Serverless rates of {serverless.prices(region)['as_of']}, emr/prices.json)")
    return rows


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


if __name__ == "__main__":
    sys.exit(main())
