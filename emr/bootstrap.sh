#!/usr/bin/env bash
# EMR bootstrap action: a Python 3.11 virtual environment with the pipeline's pinned packages
# and the `helpers` wheel, on every node. Spark's Python workers use it (emr/configurations.json
# sets PYSPARK_PYTHON to it); on the primary node it can also run the notebooks (papermill).
#
# Usage: bootstrap.sh --wheel s3://bucket/prefix/fruits_helpers-X-py3-none-any.whl
#                     [--venv /opt/fruits-venv] [--python python3.11] [--pip-args "..."]
#                     [--dry-run]
#   --wheel     the project's wheel (s3:// URI or local path)
#   --venv      where to create the environment (default /opt/fruits-venv)
#   --python    interpreter to build it from (default python3.11, installed with dnf if missing)
#   --pip-args  extra pip arguments (e.g. an internal index)
#   --dry-run   print the commands instead of running them
#
# Idempotent: a second run reuses the environment and reinstalls nothing already there.
# Fails loudly: any failing command stops the bootstrap, which fails the cluster start.
set -euo pipefail

# 1. Pinned versions: the same as pyproject.toml (tests/test_emr.py checks), minus pyspark,
#    which EMR provides (Spark 3.5 of EMR 7.x; the code uses no API it lacks).
PINNED=(
  "tensorflow-cpu==2.21.0"
  "pandas==2.2.3"
  "pyarrow==17.0.0"
  "pillow==11.3.0"
  "matplotlib==3.9.4"
  "scikit-learn==1.7.2"
  "boto3>=1.34"
  "pyyaml>=6.0"
)
PRIMARY_ONLY=("papermill==2.6.0" "ipykernel>=6.29")

WHEEL=""
VENV="/opt/fruits-venv"
PYTHON="python3.11"
PIP_ARGS=""
DRY_RUN=0

# 2. Arguments
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheel) WHEEL="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --pip-args) PIP_ARGS="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$WHEEL" ]]; then
  echo "bootstrap: --wheel is required" >&2
  exit 2
fi

run() {
  echo "+ $*"
  if [[ "$DRY_RUN" -eq 0 ]]; then
    "$@"
  fi
}

is_primary() {
  # EMR writes the node's role here; absent outside EMR (then: not primary).
  local info=/mnt/var/lib/info/instance.json
  [[ -f "$info" ]] && grep -q '"isMaster": *true' "$info"
}

# 3. Python 3.11 (EMR 7's system Python is 3.9; Amazon Linux 2023 packages 3.11)
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  run sudo dnf install -y -q python3.11 python3.11-pip
fi

# 4. The environment and the pinned packages
if [[ ! -x "$VENV/bin/python" ]]; then
  run sudo "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
run sudo "$VENV/bin/python" -m pip install --quiet --upgrade pip $PIP_ARGS
# shellcheck disable=SC2086
run sudo "$VENV/bin/python" -m pip install --quiet $PIP_ARGS "${PINNED[@]}"

# 5. The project's wheel
LOCAL_WHEEL="$WHEEL"
if [[ "$WHEEL" == s3://* ]]; then
  LOCAL_WHEEL="/tmp/$(basename "$WHEEL")"
  run aws s3 cp --only-show-errors "$WHEEL" "$LOCAL_WHEEL"
fi
# shellcheck disable=SC2086
run sudo "$VENV/bin/python" -m pip install --quiet --no-deps --force-reinstall $PIP_ARGS "$LOCAL_WHEEL"

# 6. Primary node only: notebook runner, and EMR's pyspark on the environment's path
if is_primary; then
  # shellcheck disable=SC2086
  run sudo "$VENV/bin/python" -m pip install --quiet $PIP_ARGS "${PRIMARY_ONLY[@]}"
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || echo "$VENV/lib/python3.11/site-packages")
  PY4J=$(find /usr/lib/spark/python/lib -name 'py4j-*.zip' 2>/dev/null | head -n 1 || true)
  run sudo sh -c "printf '%s\n%s\n' /usr/lib/spark/python '$PY4J' > '$SITE/emr-pyspark.pth'"
  run sudo "$VENV/bin/python" -m ipykernel install --name fruits --display-name "Python (fruits)"
fi

# 7. What was installed, for the bootstrap log
if [[ "$DRY_RUN" -eq 0 ]]; then
  "$VENV/bin/python" -m pip freeze
fi
echo "bootstrap: done (environment $VENV)"
