"""A worker's executor killed mid-job on a real standalone cluster (master + 2 workers on
127.0.0.1): the job completes with every image exactly once and the features of a clean run."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.spark, pytest.mark.slow]

SCENARIO = textwrap.dedent(
    """
    import json, sys, threading, time
    from pathlib import Path
    import numpy as np, psutil
    from helpers.core import inference
    from helpers.spark import featurize, ingest
    from helpers.core.backbones import get_backbone
    from helpers.core.recipe import Recipe, resolve_weights
    from helpers.spark.session import get_spark
    from tests.standalone import standalone_cluster

    data, out = Path(sys.argv[1]), sys.argv[2]
    killed = []

    def kill_one_executor(spark):
        tracker = spark.sparkContext.statusTracker()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for stage_id in tracker.getActiveStageIds():
                info = tracker.getStageInfo(stage_id)
                if info and info.numCompletedTasks >= 1 and info.numActiveTasks >= 1:
                    for proc in psutil.process_iter(["cmdline"]):
                        cmd = proc.info["cmdline"] or []
                        is_jvm = bool(cmd) and cmd[0].endswith("java")
                        if is_jvm and "CoarseGrainedExecutorBackend" in " ".join(cmd):
                            proc.kill()
                            killed.append(proc.pid)
                            return
            time.sleep(0.2)

    with standalone_cluster(workers=2, cores_per_worker=1) as (master, _):
        spark = get_spark(master, app_name="worker-loss", conf={
            "spark.ui.enabled": "false", "spark.executor.cores": "1",
            "spark.executor.memory": "2g", "spark.task.maxFailures": "4"})
        images = ingest.list_images(
            spark, str(data), out + ".listing", num_partitions=12
        ).images
        killer = threading.Thread(target=kill_one_executor, args=(spark,))
        killer.start()
        featurize.add_features(images, Recipe.resolve(), batch_size=16).write.parquet(out)
        killer.join()
        rows = spark.read.parquet(out).toPandas()
        spark.stop()

    backbone = get_backbone("mobilenet_v2")
    infer = inference.load_inference_fn("mobilenet_v2", resolve_weights(backbone))
    paths = rows["path"].tolist()
    clean = inference.featurize_batch(
        backbone, infer, [Path(p.removeprefix("file:")).read_bytes() for p in paths], 32)
    pairs = zip(rows["features"], clean["features"])
    diff = max(float(np.abs(np.asarray(a) - b).max()) for a, b in pairs)
    files = sorted(str(p) for p in data.rglob("*.jpg"))
    print(json.dumps({"killed": killed, "rows": len(rows), "distinct": rows["path"].nunique(),
                      "files": len(files), "errors": int(rows["error"].notna().sum()),
                      "max_diff": diff}))
    """
)


def test_job_survives_a_killed_executor(tmp_path, fruits_sample):
    import shutil

    data = tmp_path / "data"
    for cls in sorted(p.name for p in fruits_sample.iterdir() if p.is_dir())[:6]:
        shutil.copytree(fruits_sample / cls, data / "Training" / cls)  # 240 images
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, str(data), str(tmp_path / "features")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(seen["killed"]) == 1, "no executor was killed mid-job"
    assert seen["rows"] == seen["distinct"] == seen["files"] == 240
    assert seen["errors"] == 0
    assert seen["max_diff"] < 1e-4
