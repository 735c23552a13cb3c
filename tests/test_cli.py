"""The command line as README tells users to run it."""

import json
import subprocess

import pytest

from tests.clirun import assert_one_line_error, run_cli
from tests.conftest import ROOT


def helpers_cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli("helpers", *args, timeout=600)


def test_readme_commands_are_the_makefile_targets():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    dry = subprocess.run(["make", "-n", "run-cli"], cwd=ROOT, capture_output=True, text=True)
    assert "-m helpers run" in dry.stdout
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.slow
def test_main_job_on_data_sample(tmp_path):
    """What `make run-cli` runs, on the default input, into a temporary output folder, in the
    fast mode (the default mode runs in the notebooks' tests and the EMR rehearsal)."""
    out = tmp_path / "output"
    done = helpers_cli("run", "--output", str(out), "--runtime", "openvino", "--input-size", "128")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["images"] == summary["featurized"] == 132
    assert (out / "features" / "_SUCCESS").exists()
    assert (out / "reduced" / "_SUCCESS").exists()
    assert (out / "explained_variance.png").stat().st_size > 10_000
    report = json.loads((out / "run_report.json").read_text())
    assert report["images"]["labels"] == 6
    assert {c["split"] for c in report["images"]["per_label_split"]} == {"Training", "Test"}
    assert report["model"]["weights_file"].endswith(
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    )
    assert (report["model"]["runtime"], report["model"]["input_size"]) == ("openvino", 128)
    assert "stage featurize: done" in done.stderr
    # a successful run prints no stack trace (py4j's retried connection resets stay quiet)
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr
    # every Spark job says which stage ran it and what it did (Spark UI, event log, notebook 04)
    (event_log,) = (out / "spark-events").iterdir()
    events = [json.loads(line) for line in event_log.read_text().splitlines()]
    props = [e["Properties"] for e in events if e["Event"] == "SparkListenerJobStart"]
    named = [(p.get("spark.jobGroup.id"), p.get("spark.job.description")) for p in props]
    # (Spark SQL's writes keep the description but not always the group)
    assert {group for group, _ in named} <= {"featurize", "inventory", "reduce", None}, named
    prefixes = ("featurize:", "inventory:", "reduce:", "PCA:")
    assert all(text and text.startswith(prefixes) for _, text in named), named
    write = "featurize: mobilenet_v2 128 openvino fp32 on 132 images, write features"
    assert write in [text for _, text in named], named

    # the EMR cli mode's second step: recognition on the run's output
    done = helpers_cli(
        "recognize", "--output", str(out), "--cluster-k-range", "5", "7",
        "--classifier", "logistic_regression",  # one head: the comparison is the notebooks' test
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    # a step's stderr is a log: the project's lines, no console bar of Spark's task counts; the
    # whole story in the output's logs/, as for run
    assert "[Stage " not in done.stderr, done.stderr[-2000:]
    (recognize_log,) = (out / "logs").glob("recognize-*.log")
    assert "writing recognizer" in recognize_log.read_text()
    summary = json.loads(done.stdout)
    assert summary["split"]["test_rows"] == 36 and summary["accuracy"] >= 0.9
    assert 5 <= summary["clusters"] <= 7
    recipe = json.loads((out / "recognizer" / "recognizer.json").read_text())["settings"]["recipe"]
    manifest = json.loads((out / "features" / "_manifest.json").read_text())
    assert recipe == {k: manifest[k] for k in recipe}  # the features' recipe, unchanged
    assert recipe["weights"]["kind"] == "imagenet" and recipe["weights"]["name"].endswith(
        "_no_top.h5"
    )
    assert (recipe["runtime"], recipe["input_size"]) == ("openvino", 128)  # for predict
    assert (out / "confusion_matrix.png").stat().st_size > 10_000

    missing = helpers_cli("recognize", "--output", str(tmp_path / "nothing"))
    assert_one_line_error(missing, "error: no features/ under")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--input", "no/such/folder"], "error: input not found"),
        (["--input", "ftp://host/photos"], "error: input must be a local folder or file"),
        (["--batch-size", "0"], "error: batch_size must be a positive integer"),
        (["--variance-threshold", "0"], "error: variance_threshold must be in (0, 1]"),
        (["--weights", "missing.h5"], "error: weights file not found"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message, tmp_path):
    done = helpers_cli("run", "--output", str(tmp_path / "out"), *args)
    assert_one_line_error(done, message)
    assert not (tmp_path / "out").exists()


@pytest.mark.spark
@pytest.mark.slow
def test_an_input_with_nothing_to_read_is_one_line(tmp_path):
    (tmp_path / "in" / "Training" / "Apple").mkdir(parents=True)
    (tmp_path / "in" / "Training" / "Apple" / "notes.txt").write_text("no photo yet")
    done = helpers_cli("run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"))
    error = assert_one_line_error(done, "error: no images to read")
    assert error == (
        f"error: no images to read under {tmp_path / 'in'}: found 1, ignored 1, "
        f"failed 0; for example file:{tmp_path / 'in'}/Training/Apple/notes.txt: "
        "not an image extension (.txt)"
    )
    assert "\tat " not in done.stderr
