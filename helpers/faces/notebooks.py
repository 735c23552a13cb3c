"""Glue for the notebooks in ``notebooks/`` and the headless papermill runner.

Notebooks call :func:`start_spark` and :func:`record_metrics`; ``python -m helpers notebooks``
executes them in order with papermill, each with the parameters it declares, and keeps the
executed copies (with outputs and figures) under ``<output>/notebooks/``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from helpers import config, layout, storage
from helpers.spark.session import get_spark

log = logging.getLogger(__name__)

NOTEBOOK_DIR = config.PROJECT_ROOT / "notebooks"
PIPELINE_NOTEBOOKS = (
    "01_ingestion.ipynb",
    "02_feature_extraction.ipynb",
    "03_pca.ipynb",
    "04_spark_ui_monitoring.ipynb",
    "05_recognition.ipynb",
)
EXECUTED_DIR = layout.NOTEBOOKS


def resolve_uris(input_uri: str | None = None, output_uri: str | None = None) -> tuple[str, str]:
    """Notebook defaults: the project's ``data_sample/`` in, ``output/`` out."""
    return input_uri or config.default_input(), output_uri or config.default_output()


def start_spark(master: str | None, output_uri: str, app_name: str) -> SparkSession:
    """The kernel's session if it has one (EMR Studio), else a new one logging events under
    ``<output>/spark-events`` and its log under ``<output>/logs`` when the output is local
    (for the monitoring notebook, and for support).

    Raises:
        ValueError: the kernel's session drives from a YARN container (EMR's PySpark kernel,
            Livy in cluster mode) and the output is a local folder, which would be written
            there and lost with the container.
    """
    from pyspark.sql import SparkSession

    from helpers.observe import logs

    active = SparkSession.getActiveSession()
    if active is not None:
        check_output_outlives_driver(active.conf.get("spark.submit.deployMode", "client"),
                                     output_uri)  # fmt: skip
    event_logs = layout.OutputLayout(output_uri).local_event_logs()
    # No console progress bar: it would land in the notebook's cell outputs (the featurization
    # shows its own progress line).
    conf = {"spark.ui.showConsoleProgress": "false"}
    # the full log of this notebook's session beside the outputs (local outputs)
    log_file = logs.log_file(output_uri, app_name)
    logs.setup_logging(log_file, console=False)
    return get_spark(
        master, app_name=app_name, conf=conf, event_log_dir=event_logs, log_file=log_file
    )


def check_output_outlives_driver(deploy_mode: str, output_uri: str) -> None:
    """Refuse, in one line, a local output for a driver in a YARN container (cluster deploy
    mode): its files would land in the container, not in the notebook's workspace."""
    if deploy_mode == "cluster" and storage.is_local(output_uri):
        raise ValueError(
            f"OUTPUT_URI {output_uri} is a folder, but this kernel's Spark driver runs in a YARN "
            "container on the cluster, where it would be lost: give an s3:// OUTPUT_URI"
        )


def ingestion_listing_uri(output_uri: str) -> str:
    """Where the ingestion notebook writes its listing of the input (Parquet)."""
    return storage.join(output_uri, EXECUTED_DIR, layout.NOTEBOOK_LISTING)


def record_metrics(output_uri: str, notebook: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write the figures a notebook wants checked to ``<output>/notebooks/<name>.metrics.json``."""
    uri = storage.join(output_uri, EXECUTED_DIR, layout.NOTEBOOK_METRICS.format(notebook=notebook))
    storage.write_bytes(
        uri, json.dumps(metrics, indent=2, default=str).encode(), "application/json"
    )
    return metrics


def read_metrics(output_uri: str, notebook: str) -> dict[str, Any]:
    """Read what :func:`record_metrics` wrote."""
    uri = storage.join(output_uri, EXECUTED_DIR, layout.NOTEBOOK_METRICS.format(notebook=notebook))
    return json.loads(storage.read_bytes(uri))


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's cell tagged ``parameters``."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def run_notebooks(
    parameters: dict[str, Any],
    output_uri: str | None = None,
    notebooks: tuple[str, ...] = PIPELINE_NOTEBOOKS,
    kernel_name: str | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
) -> list[str]:
    """Execute notebooks in order with papermill; return where the executed copies went.

    Each notebook receives only the parameters it declares (``OUTPUT_URI`` is always set), so
    one parameter file serves them all. A failing cell stops the run with papermill's error,
    and the executed copy, with the failing cell's output, is still saved.
    """
    import papermill

    from helpers.observe import logs

    logs.quiet_tensorflow()  # kernels, their Spark JVMs and Python workers inherit it
    _, output = resolve_uris(None, output_uri or parameters.get("OUTPUT_URI"))
    upper = {k.upper(): v for k, v in parameters.items()}
    upper["OUTPUT_URI"] = output
    # Kernels run in notebooks/: make the caller's relative local paths absolute first.
    for key, value in upper.items():
        if (
            key.endswith(("_URI", "_DIR"))
            and isinstance(value, str)
            and storage.scheme(value) == ""
        ):
            upper[key] = str(Path(value).expanduser().resolve())
    output = upper["OUTPUT_URI"]
    declared = {name: declared_parameters(notebook_dir / name) for name in notebooks}
    unknown = set(upper) - set().union(*declared.values())
    if unknown:
        raise ValueError(f"unknown notebook parameter(s): {', '.join(sorted(unknown))}")
    written = []
    with tempfile.TemporaryDirectory(prefix="fruits-kernels-") as kernels:
        for name in notebooks:
            source = notebook_dir / name
            written.append(
                _execute(papermill, source, declared[name], upper, output, kernel_name, kernels)
            )
    return written


def _execute(
    papermill, source: Path, wanted: set[str], upper: dict, output: str,
    kernel_name: str | None, kernels: str,
) -> str:  # fmt: skip
    """Execute one notebook with the parameters it declares; return where its copy went."""
    target = storage.join(output, EXECUTED_DIR, source.name)
    if storage.is_local(target):
        storage.local_path(target).parent.mkdir(parents=True, exist_ok=True)
    log.info("executing %s -> %s", source.name, storage.redact(target))
    # the notebooks' own Python kernel over IPC; a named one (EMR's) keeps its transport
    ipc = {"kernel_manager_class": _ipc_kernel_manager(kernels)} if kernel_name is None else {}
    try:
        papermill.execute_notebook(
            str(source),
            target,
            parameters={k: v for k, v in upper.items() if k in wanted},
            kernel_name=kernel_name,
            cwd=str(source.parent),
            progress_bar=False,
            log_output=False,
            **ipc,
        )
    except papermill.PapermillExecutionError as err:
        raise NotebookFailed(
            f"{source.name} failed in cell {err.exec_count}: {err.ename}: {err.evalue} "
            f"(executed copy: {storage.redact(target)})"
        ) from None
    return target


def _ipc_kernel_manager(folder: str):
    """Kernel manager talking to its kernel over Unix sockets in ``folder``: the kernel is on
    this machine, and over TCP without encryption it warns on every start."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            kwargs.setdefault("transport", "ipc")
            kwargs.setdefault("ip", str(Path(folder) / "kernel"))
            super().__init__(**kwargs)

    return IPCKernelManager


CHECK_MARKER = "# NBVAL_CHECK_OUTPUT"


class NotebookFailed(RuntimeError):
    """A notebook cell raised; the executed copy shows where."""


def keep_checked_outputs(executed: str | Path, source: str | Path) -> int:
    """Copy the outputs of ``# NBVAL_CHECK_OUTPUT`` cells from an executed notebook into the
    source notebook and strip every other output (execution counts and run metadata too).

    Returns the number of cells whose outputs were kept.
    """
    import nbformat

    ran = nbformat.read(str(executed), as_version=4)
    book = nbformat.read(str(source), as_version=4)
    by_source = {c.source: c for c in ran.cells if c.cell_type == "code"}
    kept = 0
    for cell in book.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
        done = by_source.get(cell.source)
        if CHECK_MARKER in cell.source and done is not None:
            # stderr carries Spark's start-up warnings, which vary from machine to machine
            cell.outputs = [o for o in done.outputs if o.get("name") != "stderr"]
            # nbval compares only cells that record having run
            cell.execution_count = done.execution_count
            kept += 1
        else:
            cell.outputs = []
    book.metadata.pop("papermill", None)
    nbformat.write(book, str(source))
    return kept
