# One entry point for setup, the main job, tests and lint.
#   make run    set up .venv (first time) and run the chain on data_sample/ -> output/
#   make test   set up .venv (first time) and run lint + the whole test suite
#   make test-fast         lint + the tests that start no notebook, cluster or EMR rehearsal
#   make rehearse-emr      what EMR runs, run here: bootstrap, Spark 3.5.6, YARN, S3A
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPUT ?= data_sample
OUTPUT ?= output
ARGS ?=

.PHONY: setup setup-iam jars pack chaos run run-cli test test-fast rehearse-emr lint bench bench-scale bench-featurize bench-fixed-cost bench-profile bench-runtimes bench-recognition sample notebooks-refresh clean

setup: $(VENV)/.installed

# Reinstall only when the dependency list changes.
$(VENV)/.installed: pyproject.toml tools/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[runtime,notebooks,test]" -e tools
	touch $@

# The IAM policy simulator the tests decide every recorded AWS request with (Node; pinned by
# tests/iam/package-lock.json; npm's cache is ~/.npm).
setup-iam: tests/iam/node_modules/.installed
tests/iam/node_modules/.installed: tests/iam/package-lock.json
	npm ci --prefix tests/iam --no-audit --no-fund --loglevel=error
	touch $@

# The main job: notebooks 01-05 headless (papermill); executed copies in $(OUTPUT)/notebooks.
run: setup
	$(BIN)/python -m helpers notebooks -p INPUT_URI "$(INPUT)" --output "$(OUTPUT)" $(ARGS)

# The same chain without notebooks (as an EMR step would run it).
run-cli: setup
	$(BIN)/python -m helpers run --input "$(INPUT)" --output "$(OUTPUT)" $(ARGS)
	$(BIN)/python -m helpers recognize --output "$(OUTPUT)"

lint: setup
	$(BIN)/ruff check helpers tools tests benchmarks
	$(BIN)/ruff format --check helpers tools tests benchmarks

# What the EMR rehearsal needs, fetched once per machine into ~/.cache/fruits: jars from Maven
# Central (S3A connector, YARN minicluster) and EMR's Spark 3.5.6 (pyspark's sdist, from PyPI).
# The wheelhouse too (pip download for EMR's nodes, ~0.5 GB, ~/.cache/fruits/wheelhouse): the
# rehearsal packs the environment archive from it.
jars: setup
	bash emr/rehearsal/fetch_jars.sh >/dev/null
	$(BIN)/python -c "from tests.emr_box import emr_spark_home; emr_spark_home()"
	$(BIN)/python -c "from fruits_tools import wheelhouse; wheelhouse.build()"

# The environment archive for a cluster without the bootstrap (docs/shared-clusters.md):
# dist/fruits-env.tar.gz and dist/fruits-env.json.
pack: setup
	rm -f dist/fruits_helpers-*.whl
	$(BIN)/python -m pip wheel --quiet --no-deps -w dist .
	$(BIN)/python -m fruits_tools pack --wheel dist/fruits_helpers-0.1.0-py3-none-any.whl \
	  --output dist/fruits-env.tar.gz

# Two workers: the suite waits on JVMs, YARN and subprocesses much of the time, so both cores
# stay busy; each test module (and the notebooks, in order) runs whole on one worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
WORKERS ?= 2
test: lint jars setup-iam
	$(BIN)/python -m pytest -n $(WORKERS) $(ARGS)

test-fast: lint setup-iam
	$(BIN)/python -m pytest tests -m "not slow and not notebooks and not rehearsal and not s3a" $(ARGS)

# EMR in a box (README "Run on EMR"): the bootstrap executed, the steps on YARN in cluster mode
# with EMR's Spark 3.5.6, S3 through S3A on a local S3 server, every request decided by AWS's
# rules (the nodes' and the operator's policies, the v2 service role's network), the EMR defects,
# the notebooks' EMR Studio copies through sparkmagic's PySpark kernel and a Livy-protocol server;
# then a cluster you don't own: the environment archive without the bootstrap, EMR Serverless.
rehearse-emr: setup jars setup-iam
	$(BIN)/python -m pytest -v tests/test_emr_defects.py tests/test_emr_network.py \
	  tests/test_s3gate.py tests/test_operator_policy.py tests/test_aws_bootstrap.py \
	  tests/test_livy_standin.py tests/test_emr_rehearsal.py tests/test_s3a.py \
	  tests/test_pack.py tests/test_serverless.py $(ARGS)

# The chain killed at 24 random moments per backend (local folder, S3 through S3A), seeded:
# CHAOS_SEED=N for another draw; the tables of kill moments and outcomes in output/chaos/.
CHAOS_SEED ?= 29
chaos: setup jars setup-iam
	FRUITS_CHAOS_KILLS=24 FRUITS_CHAOS_SEED=$(CHAOS_SEED) FRUITS_CHAOS_REPORT_DIR=output/chaos \
	  $(BIN)/python -m pytest -s tests/test_chaos_local.py tests/test_chaos_s3a.py $(ARGS)

# Every featurization mode against the plain Keras loop and the reference approach, on the
# same 7,200 images (README "Speed and sizes"); about 10 minutes on 2 cores.
bench: setup
	$(BIN)/python benchmarks/modes_bench.py $(ARGS)

# 10,000 and 90,000 images, default and fast mode: time per stage and memory; 2,000 images on a
# standalone cluster with 1 and 2 executors; then the EMR sizing model (from make bench's and
# these figures) and its self-check against the standalone runs. About an hour on 2 cores.
bench-scale: setup
	$(BIN)/python benchmarks/scale_bench.py $(ARGS)
	$(BIN)/python benchmarks/sizing.py

# Where each millisecond of an image goes inside one featurizing task (fast mode by default).
bench-profile: setup
	$(BIN)/python benchmarks/image_profile.py $(ARGS)

# Where a run's fixed cost goes, from its event log (MODE=openvino-96 for the fast mode).
MODE ?= default
bench-fixed-cost: setup
	$(BIN)/python benchmarks/fixed_cost.py --mode $(MODE) $(ARGS)

# The backbone alone in TensorFlow, OpenVINO FP32/INT8 and ONNX Runtime (the last two need
# `pip install nncf tf2onnx onnxruntime`, not project dependencies).
bench-runtimes: setup
	$(BIN)/python benchmarks/runtimes_bench.py $(ARGS)

# Plain and cluttered accuracy of each recognizer head, augmentation on and off, and what the
# augmentation costs, on the shared sample (README "What fruit is this?"); about 20 minutes.
bench-recognition: setup
	$(BIN)/python benchmarks/recognition_bench.py $(ARGS)

# Throughput by dataset size, 1 vs 2 executors, PCA at 90,000 rows (README "Performance").
bench-featurize: setup
	$(BIN)/python benchmarks/featurize_bench.py $(ARGS)

sample: setup
	$(BIN)/python -m fruits_tools make-sample --output data_sample

# After changing a notebook: run them all, then keep only the outputs nbval compares.
notebooks-refresh: setup
	$(BIN)/python -m helpers notebooks --output "$(OUTPUT)"
	for nb in notebooks/*.ipynb; do \
	  $(BIN)/python -c "import sys; from helpers.faces.notebooks import keep_checked_outputs as k; \
	  k(sys.argv[1], sys.argv[2])" "$(OUTPUT)/notebooks/$$(basename $$nb)" "$$nb"; done

clean:
	rm -rf output .pytest_cache spark-warehouse
