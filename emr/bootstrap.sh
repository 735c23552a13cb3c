#!/usr/bin/env bash
# EMR bootstrap action: a Python 3.11 virtual environment with the pipeline's pinned packages
# and the `helpers` wheel, on every node. Spark's Python workers use it (emr/configurations.json
# sets PYSPARK_PYTHON to it); on the primary node it can also run the notebooks (papermill).
#
# Usage: bootstrap.sh --wheel s3://bucket/prefix/fruits_helpers-X-py3-none-any.whl
#                     [--wheelhouse s3://bucket/prefix/code/wheelhouse]
#                     [--region eu-west-3] [--work-dir DIR] [--need-mb N]
#                     [--venv /opt/fruits-venv] [--python python3.11] [--pip-args "..."]
#                     [--instance-info FILE] [--spark-home DIR] [--no-sudo] [--dry-run]
#   --wheel          the project's wheel (s3:// URI or local path)
#   --wheelhouse     the wheels staged by `emr stage` (s3:// URI or local folder): installs
#                    with --no-index from there, so no node needs the internet; its
#                    requirements.txt (every node) and requirements-primary.txt (primary node)
#                    name the pinned packages. Without it, the pins below come from the index.
#   --region         the bucket's region, given to every `aws s3 cp` (required with s3://
#                    sources): nodes in a private subnet reach S3 only through a gateway
#                    endpoint, i.e. the regional endpoint; the global one hangs there
#   --work-dir       where the wheel and the wheelhouse are copied (default: under /mnt, EMR's
#                    data volume, when it exists; else /tmp), never on the small root volume
#   --need-mb        free space the environment needs where it is built (default 3000: 2.4 GB
#                    installed, measured, plus headroom); checked first, with the copies' size
#                    in the work folder
#   --venv           where to create the environment (default /opt/fruits-venv)
#   --python         interpreter to build it from (default python3.11, installed with dnf
#                    if missing)
#   --pip-args       extra pip arguments (e.g. an internal index); never written to the log
#                    with credentials (user:token@ in a URL is masked)
#   --instance-info  EMR's description of this node (default /mnt/var/lib/info/instance.json);
#                    '"isMaster": true' in it makes this the primary node
#   --spark-home     where EMR installs Spark (default /usr/lib/spark); it need not exist yet
#   --no-sudo        run every command as the current user (sudo is never used as root)
#   --dry-run        print the commands instead of running them
#
# EMR runs bootstrap actions *before* it installs Spark: nothing here may need Spark. The
# primary node's environment finds EMR's pyspark through a .pth hook that looks for it each
# time Python starts, so it appears once Spark is installed.
#
# Idempotent: a second run reuses the environment and reinstalls nothing already there.
# Fails loudly: any failing command stops the bootstrap, which fails the cluster start.
set -euo pipefail

# 1. Pinned versions: the same as pyproject.toml (tests/test_emr.py checks), minus pyspark,
#    which EMR provides (Spark 3.5 of EMR 7.x; the code uses no API it lacks). NumPy is pinned
#    below 2 because EMR's pyspark 3.5 declares numpy<2 (pip would otherwise pick NumPy 2).
PINNED=(
  "tensorflow-cpu==2.21.0"
  "openvino==2026.4.1"
  "numpy==1.26.4"
  "pandas==2.2.3"
  "pyarrow==17.0.0"
  "pillow==11.3.0"
  "matplotlib==3.9.4"
  "scikit-learn==1.7.2"
  "sparkmeasure==0.24.0"
  "boto3>=1.34"
  "pyyaml>=6.0"
)
PRIMARY_ONLY=("papermill==2.6.0" "ipykernel>=6.29")

WHEEL=""
WHEELHOUSE=""
REGION=""
WORK_DIR=""
NEED_MB=3000
#: what the copies need in the work folder: the wheelhouse (~0.5 GB) and the wheel
COPY_MB=1024
VENV="/opt/fruits-venv"
PYTHON="python3.11"
PIP_ARGS=""
INSTANCE_INFO="/mnt/var/lib/info/instance.json"
SPARK_HOME_DIR="/usr/lib/spark"
SUDO=sudo
DRY_RUN=0

# 2. Arguments
while [[ $# -gt 0 ]]; do
  case "$1" in
    --wheel) WHEEL="$2"; shift 2 ;;
    --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
    --region) REGION="$2"; shift 2 ;;
    --work-dir) WORK_DIR="$2"; shift 2 ;;
    --need-mb) NEED_MB="$2"; shift 2 ;;
    --venv) VENV="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --pip-args) PIP_ARGS="$2"; shift 2 ;;
    --instance-info) INSTANCE_INFO="$2"; shift 2 ;;
    --spark-home) SPARK_HOME_DIR="$2"; shift 2 ;;
    --no-sudo) SUDO=""; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) awk 'NR > 1 && /^set -euo/ {exit} NR > 1' "$0"; exit 0 ;;
    *) echo "bootstrap: unknown argument: $1" >&2; exit 2 ;;
  esac
done
if [[ -z "$WHEEL" ]]; then
  echo "bootstrap: --wheel is required" >&2
  exit 2
fi
if [[ -z "$REGION" && ( "$WHEEL" == s3://* || "$WHEELHOUSE" == s3://* ) ]]; then
  echo "bootstrap: --region is required to copy from s3:// (a private subnet reaches only S3's regional endpoint)" >&2
  exit 2
fi
if [[ -z "$WORK_DIR" ]]; then
  if [[ -d /mnt ]]; then WORK_DIR="/mnt/fruits-bootstrap"; else WORK_DIR="/tmp/fruits-bootstrap"; fi
fi

if [[ "$(id -u)" -eq 0 ]]; then
  SUDO=""
fi

# The log goes to S3: credentials in a URL (https://user:token@host/...) are masked.
redact() {
  sed -E 's#(://)[^/@[:space:]]+@#\1***@#g'
}

run() {
  printf '+ %s\n' "$*" | redact
  if [[ "$DRY_RUN" -eq 0 ]]; then
    "$@"
  fi
}

# as root: through sudo on EMR (bootstrap actions run as the hadoop user), directly otherwise
run_root() {
  if [[ -n "$SUDO" ]]; then run "$SUDO" "$@"; else run "$@"; fi
}

is_primary() {
  # EMR writes the node's role here; absent outside EMR (then: not primary).
  [[ -f "$INSTANCE_INFO" ]] && grep -q '"isMaster": *true' "$INSTANCE_INFO"
}

# 3. Free space, before anything is written: one line naming the folder, what is free and what
#    is needed (EMR's default root volume is small; the launcher sets EbsRootVolumeSize)
free_mb() {
  local dir="$1"
  while [[ ! -d "$dir" ]]; do dir=$(dirname "$dir"); done
  df -Pm "$dir" | awk 'NR == 2 {print $4}'
}
check_space() {
  local dir="$1" need="$2" free
  free=$(free_mb "$dir")
  if [[ "$free" -lt "$need" ]]; then
    echo "bootstrap: $free MB free for $dir, $need MB needed: give the nodes a larger volume (emr create --root-volume-gb)" >&2
    exit 1
  fi
}
check_space "$VENV" "$NEED_MB"
if [[ "$WHEEL" == s3://* || "$WHEELHOUSE" == s3://* ]]; then
  check_space "$WORK_DIR" "$COPY_MB"
  # /mnt belongs to root on EMR; the copies are made as the bootstrap's user
  run_root mkdir -p "$WORK_DIR"
  run_root chown "$(id -u)" "$WORK_DIR"
fi

# 4. Python 3.11 (EMR 7's system Python is 3.9; Amazon Linux 2023 packages 3.11)
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  run_root dnf install -y -q python3.11 python3.11-pip
fi

# 5. The environment and the pinned packages: from the staged wheelhouse with no index, or
#    from the index when no wheelhouse is given
if [[ ! -x "$VENV/bin/python" ]]; then
  run_root "$PYTHON" -m venv "$VENV"
fi
SOURCE=()
if [[ -n "$WHEELHOUSE" ]]; then
  LOCAL_WHEELHOUSE="$WHEELHOUSE"
  if [[ "$WHEELHOUSE" == s3://* ]]; then
    LOCAL_WHEELHOUSE="$WORK_DIR/wheelhouse"
    run aws s3 cp --region "$REGION" --recursive --only-show-errors "$WHEELHOUSE" "$LOCAL_WHEELHOUSE"
  fi
  SOURCE=(--no-index --find-links "$LOCAL_WHEELHOUSE")
  # every wheel by exact version and SHA-256, written when staging: a changed wheel is refused
  # shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
  run_root "$VENV/bin/python" -m pip install --quiet "${SOURCE[@]}" $PIP_ARGS \
    --require-hashes -r "$LOCAL_WHEELHOUSE/requirements.lock"
else
  # shellcheck disable=SC2086
  run_root "$VENV/bin/python" -m pip install --quiet --upgrade pip $PIP_ARGS
  # shellcheck disable=SC2086
  run_root "$VENV/bin/python" -m pip install --quiet $PIP_ARGS "${PINNED[@]}"
fi

# 6. The project's wheel
LOCAL_WHEEL="$WHEEL"
if [[ "$WHEEL" == s3://* ]]; then
  LOCAL_WHEEL="$WORK_DIR/$(basename "$WHEEL")"
  run aws s3 cp --region "$REGION" --only-show-errors "$WHEEL" "$LOCAL_WHEEL"
fi
# shellcheck disable=SC2086
run_root "$VENV/bin/python" -m pip install --quiet --no-deps --force-reinstall "${SOURCE[@]}" $PIP_ARGS "$LOCAL_WHEEL"

# 7. Primary node only: notebook runner, and EMR's pyspark on the environment's path
if is_primary; then
  if [[ -n "$WHEELHOUSE" ]]; then
    # shellcheck disable=SC2086
    run_root "$VENV/bin/python" -m pip install --quiet "${SOURCE[@]}" $PIP_ARGS \
      --require-hashes -r "$LOCAL_WHEELHOUSE/requirements-primary.lock"
  else
    # shellcheck disable=SC2086
    run_root "$VENV/bin/python" -m pip install --quiet $PIP_ARGS "${PRIMARY_ONLY[@]}"
  fi
  SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || echo "$VENV/lib/python3.11/site-packages")
  # A .pth line starting with "import" runs at every interpreter start: EMR's pyspark and its
  # py4j (whatever version that Spark ships) are looked up then, not now, since Spark is
  # installed only after bootstrap actions.
  # (no comprehension: site runs the line with exec, whose imports a nested scope cannot see)
  HOOK="import os, glob, sys; h = '$SPARK_HOME_DIR/python'; sys.path.extend(filter(lambda p, os=os, sys=sys: os.path.exists(p) and p not in sys.path, [h] + sorted(glob.glob(h + '/lib/py4j-*-src.zip'))[-1:]))"
  run_root sh -c "printf '%s\n' \"\$1\" > '$SITE/emr-pyspark.pth'" sh "$HOOK"
  # in the environment itself, where its papermill looks first
  run_root "$VENV/bin/python" -m ipykernel install --sys-prefix --name fruits --display-name "Python (fruits)"
fi

# 8. What was installed, for the bootstrap log
if [[ "$DRY_RUN" -eq 0 ]]; then
  "$VENV/bin/python" -m pip freeze
fi
echo "bootstrap: done (environment $VENV)"
