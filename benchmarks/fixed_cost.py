"""Where the fixed cost of ``python -m helpers run`` goes, from the run's own Spark event log.

    python benchmarks/fixed_cost.py                          # default mode, 500 and 2,000 images
    python benchmarks/fixed_cost.py --mode openvino-96 --sizes 500 4000

Runs the command at two sizes (the Fruits-360 sample cycled). The fixed cost is the issue's
definition: wall time minus images / marginal rate, the marginal rate being the slope between
the two runs. For the larger run it prints the wall time cut into: before the Spark application
starts (interpreter, imports, JVM), each named group of Spark jobs (``spark.jobGroup.id``, set
by the pipeline), the driver's own work between jobs, and the exit after the application ends.
Writes ``fixed_cost.json`` beside the other benchmarks' figures.
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
from collections import defaultdict
from pathlib import Path

from helpers import config

ROOT = config.PROJECT_ROOT
sys.path.insert(0, str(Path(__file__).resolve().parent))
from featurize_bench import fruits_sample, make_dataset  # noqa: E402
from modes_bench import MODES  # noqa: E402


def timed_run(dataset: Path, out: Path, options: list[str]) -> tuple[float, float]:
    """Run the command; return (epoch seconds at start, wall seconds)."""
    command = [sys.executable, "-m", "helpers", "run", "--input", str(dataset),
               "--output", str(out), *options]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started, clock = time.time(), time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - clock
    if done.returncode != 0:
        raise RuntimeError(f"helpers run failed:\n{done.stderr[-3000:]}")
    return started, wall


def breakdown(event_log: Path, started: float, wall: float) -> tuple[dict[str, float], list]:
    """Seconds of the run spent before the application, in each job group, between jobs (the
    driver's own work) and after the application; and every job (description, seconds)."""
    app_start = app_end = None
    jobs: dict[int, dict] = {}
    for line in event_log.open(encoding="utf-8"):
        event = json.loads(line)
        kind = event.get("Event")
        if kind == "SparkListenerApplicationStart":
            app_start = event["Timestamp"] / 1000
        elif kind == "SparkListenerApplicationEnd":
            app_end = event["Timestamp"] / 1000
        elif kind == "SparkListenerJobStart":
            props = event.get("Properties") or {}
            description = props.get("spark.job.description") or ""
            # Spark SQL's writes keep the description, not always the group: its prefix names
            # the stage too ("PCA: ..." jobs belong to the reduce stage).
            prefix = description.split(":", 1)[0] if ":" in description else None
            jobs[event["Job ID"]] = {
                "group": props.get("spark.jobGroup.id")
                or {"PCA": "reduce"}.get(prefix, prefix)
                or "(unnamed)",
                "description": description or props.get("callSite.short"),
                "start": event["Submission Time"] / 1000,
            }
        elif kind == "SparkListenerJobEnd":
            jobs[event["Job ID"]]["end"] = event["Completion Time"] / 1000
    parts: dict[str, float] = defaultdict(float)
    parts["before the application (imports, JVM, session)"] = app_start - started
    cursor = app_start
    for job in sorted(jobs.values(), key=lambda j: j["start"]):
        # Jobs of one action can overlap; count each second once.
        begin = max(job["start"], cursor)
        if begin > cursor:
            parts["driver between jobs"] += begin - cursor
        if job["end"] > begin:
            parts[f"jobs: {job['group']}"] += job["end"] - begin
        cursor = max(cursor, job["end"])
    parts["driver between jobs"] += (app_end or cursor) - cursor
    parts["after the application (stop, exit)"] = started + wall - (app_end or cursor)
    parts["jobs (count)"] = len(jobs)
    listed = [(j["description"], round(j["end"] - j["start"], 2))
              for j in sorted(jobs.values(), key=lambda j: j["start"])]  # fmt: skip
    return {name: round(value, 2) for name, value in parts.items()}, listed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="default", choices=list(MODES))
    parser.add_argument("--sizes", type=int, nargs=2, default=[500, 2000])
    parser.add_argument("--out", default=str(ROOT / "output" / "benchmarks"))
    args = parser.parse_args(argv)
    sample = fruits_sample()
    small, large = sorted(args.sizes)
    work = Path(tempfile.mkdtemp(prefix="fixed-cost-"))
    try:
        walls, parts, jobs = {}, {}, {}
        for size in (small, large):
            dataset = make_dataset(work / f"images-{size}", size, sample)
            out = work / f"out-{size}"
            started, walls[size] = timed_run(dataset, out, MODES[args.mode])
            (log,) = sorted((out / "spark-events").iterdir())
            parts[size], jobs[size] = breakdown(log, started, walls[size])
            print(f"{size:>6} images: {walls[size]:.1f} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rate = (large - small) / (walls[large] - walls[small])
    fixed = walls[large] - large / rate
    print(f"\nmode {args.mode}: marginal rate {rate:.1f} images/s, fixed cost {fixed:.1f} s")
    print(f"\nwhere the {large:,}-image run's {walls[large]:.1f} s went:")
    for name, seconds in parts[large].items():
        print(f"  {name:<52} {seconds:>7}")
    print("\nits Spark jobs:")
    for description, seconds in jobs[large]:
        print(f"  {seconds:>7}  {description}")
    result = {"mode": args.mode, "walls_s": walls, "marginal_images_per_s": round(rate, 1),
              "fixed_s": round(fixed, 1), "breakdown": parts, "jobs": jobs}  # fmt: skip
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"fixed_cost_{args.mode}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
