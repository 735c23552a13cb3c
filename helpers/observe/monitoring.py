"""What a Spark application did: jobs, stages, tasks and executors as pandas tables.

Two sources, one shape:

- a running application's monitoring REST API (``<ui>/api/v1/applications/...``), the same API
  the Spark UI, the History Server and EMR's persistent UI serve;
- an event log file of a finished application (``spark.eventLog.dir``; plain JSON lines).

Stage and executor totals are computed from the task rows in both cases, so the figures of a
live and a finished application are comparable.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import storage

TASK_COLUMNS = [
    "stage_id", "attempt", "task_id", "index", "executor_id", "host", "launch_ms", "finish_ms",
    "duration_s", "run_time_s", "cpu_time_s", "gc_time_s", "input_bytes", "input_records",
    "output_bytes", "output_records", "shuffle_read_bytes", "shuffle_write_bytes", "status",
]  # fmt: skip


@dataclass
class AppMetrics:
    """One application's jobs, stages, tasks and executors."""

    app_id: str
    app_name: str
    jobs: pd.DataFrame
    stages: pd.DataFrame
    tasks: pd.DataFrame
    executors: pd.DataFrame


# -- event logs -------------------------------------------------------------------------------


def list_event_logs(event_log_dir: str) -> list[Path]:
    """Event log files in a local folder, oldest first (by modification time)."""
    folder = storage.local_path(event_log_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no event log folder at {folder}")
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    files = [p for p in files if not p.name.endswith((".inprogress", ".crc"))]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def read_event_log(path: str | Path) -> AppMetrics:
    """Parse a finished application's event log (uncompressed JSON lines)."""
    path = Path(path)
    app_id, app_name = path.name, ""
    jobs: dict[int, dict] = {}
    stages: dict[tuple[int, int], dict] = {}
    tasks: list[dict] = []
    executors: dict[str, dict] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            kind = event.get("Event")
            if kind == "SparkListenerApplicationStart":
                app_id, app_name = event.get("App ID", app_id), event.get("App Name", "")
            elif kind == "SparkListenerJobStart":
                props = event.get("Properties") or {}
                jobs[event["Job ID"]] = {
                    "job_id": event["Job ID"],
                    "description": props.get("spark.job.description")
                    or props.get("callSite.short", ""),
                    "submitted_ms": event.get("Submission Time"),
                    "stage_ids": event.get("Stage IDs", []),
                }
            elif kind == "SparkListenerJobEnd":
                job = jobs.setdefault(event["Job ID"], {"job_id": event["Job ID"]})
                job["completed_ms"] = event.get("Completion Time")
                job["status"] = (
                    "SUCCEEDED"
                    if event.get("Job Result", {}).get("Result") == "JobSucceeded"
                    else "FAILED"
                )
            elif kind in ("SparkListenerStageSubmitted", "SparkListenerStageCompleted"):
                info = event["Stage Info"]
                key = (info["Stage ID"], info.get("Stage Attempt ID", 0))
                props = event.get("Properties") or {}
                earlier = stages.get(key, {})
                stages[key] = {
                    "stage_id": key[0],
                    "attempt": key[1],
                    "name": info.get("Stage Name", ""),
                    "details": info.get("Details", ""),
                    "description": props.get("spark.job.description")
                    or earlier.get("description"),
                    "num_tasks": info.get("Number of Tasks"),
                    "submitted_ms": info.get("Submission Time"),
                    "completed_ms": info.get("Completion Time"),
                    "status": "FAILED" if info.get("Failure Reason") else "COMPLETE"
                    if info.get("Completion Time") else "ACTIVE",
                }  # fmt: skip
            elif kind == "SparkListenerTaskEnd":
                tasks.append(_task_from_event(event))
            elif kind == "SparkListenerExecutorAdded":
                info = event.get("Executor Info", {})
                executors[event["Executor ID"]] = {
                    "executor_id": event["Executor ID"],
                    "host": info.get("Host", ""),
                    "cores": info.get("Total Cores"),
                }
            elif kind == "SparkListenerBlockManagerAdded":
                manager = event.get("Block Manager ID", {})
                if manager.get("Executor ID") == "driver" and "driver" not in executors:
                    executors["driver"] = {
                        "executor_id": "driver",
                        "host": manager.get("Host", ""),
                        "cores": None,
                    }
    return _assemble(app_id, app_name, list(jobs.values()), list(stages.values()), tasks, executors)


def _task_from_event(event: dict) -> dict:
    info = event.get("Task Info", {})
    metrics = event.get("Task Metrics") or {}
    inp = metrics.get("Input Metrics") or {}
    out = metrics.get("Output Metrics") or {}
    shuffle_read = metrics.get("Shuffle Read Metrics") or {}
    shuffle_write = metrics.get("Shuffle Write Metrics") or {}
    reason = (event.get("Task End Reason") or {}).get("Reason", "")
    launch, finish = info.get("Launch Time"), info.get("Finish Time")
    return {
        "stage_id": event.get("Stage ID"),
        "attempt": event.get("Stage Attempt ID", 0),
        "task_id": info.get("Task ID"),
        "index": info.get("Index"),
        "executor_id": info.get("Executor ID"),
        "host": info.get("Host"),
        "launch_ms": launch,
        "finish_ms": finish,
        "duration_s": (finish - launch) / 1000 if launch and finish else np.nan,
        "run_time_s": metrics.get("Executor Run Time", 0) / 1000,
        "cpu_time_s": metrics.get("Executor CPU Time", 0) / 1e9,
        "gc_time_s": metrics.get("JVM GC Time", 0) / 1000,
        "input_bytes": inp.get("Bytes Read", 0),
        "input_records": inp.get("Records Read", 0),
        "output_bytes": out.get("Bytes Written", 0),
        "output_records": out.get("Records Written", 0),
        "shuffle_read_bytes": shuffle_read.get("Remote Bytes Read", 0)
        + shuffle_read.get("Local Bytes Read", 0),
        "shuffle_write_bytes": shuffle_write.get("Shuffle Bytes Written", 0),
        "status": "SUCCESS" if reason == "Success" else (reason or "UNKNOWN").upper(),
    }


# -- REST API ---------------------------------------------------------------------------------


def _get_json(url: str, timeout: float = 30.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def _rest_time(value: str | None) -> float | None:
    """REST timestamps look like ``2026-11-22T21:43:11.675GMT``; return epoch milliseconds."""
    if not value:
        return None
    parsed = datetime.strptime(value.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f")
    return parsed.replace(tzinfo=timezone.utc).timestamp() * 1000


def read_rest_api(ui_url: str, app_id: str | None = None, max_tasks: int = 100_000) -> AppMetrics:
    """Read a live application through its monitoring REST API.

    Args:
        ui_url: the Spark UI (``spark.sparkContext.uiWebUrl``) or a History Server.
        app_id: which application (default: the first one the server lists).
        max_tasks: tasks fetched per stage.
    """
    base = ui_url.rstrip("/") + "/api/v1/applications"
    apps = _get_json(base)
    app = next((a for a in apps if a["id"] == app_id), None) if app_id else apps[0]
    if app is None:
        raise ValueError(f"application {app_id} not found at {ui_url}")
    root = app_root(base, app)
    jobs = [
        {
            "job_id": j["jobId"],
            "description": j.get("description") or j.get("name", ""),
            "submitted_ms": _rest_time(j.get("submissionTime")),
            "completed_ms": _rest_time(j.get("completionTime")),
            "stage_ids": j.get("stageIds", []),
            "status": j.get("status"),
        }
        for j in _get_json(f"{root}/jobs")
    ]
    stages, tasks = [], []
    for s in _get_json(f"{root}/stages"):
        stages.append(
            {
                "stage_id": s["stageId"],
                "attempt": s.get("attemptId", 0),
                "name": s.get("name", ""),
                "details": s.get("details", ""),
                "description": s.get("description"),
                "num_tasks": s.get("numTasks"),
                "submitted_ms": _rest_time(s.get("submissionTime")),
                "completed_ms": _rest_time(s.get("completionTime")),
                "status": s.get("status"),
            }
        )
        task_url = (
            f"{root}/stages/{s['stageId']}/{s.get('attemptId', 0)}/taskList?length={max_tasks}"
        )
        tasks.extend(
            _task_from_rest(s["stageId"], s.get("attemptId", 0), t) for t in _get_json(task_url)
        )
    executors = {
        e["id"]: {
            "executor_id": e["id"],
            "host": e.get("hostPort", "").rsplit(":", 1)[0],
            "cores": e.get("totalCores"),
        }
        for e in _get_json(f"{root}/allexecutors")
    }
    return _assemble(app["id"], app.get("name", ""), jobs, stages, tasks, executors)


def _task_from_rest(stage_id: int, attempt: int, t: dict) -> dict:
    m = t.get("taskMetrics") or {}
    inp, out = m.get("inputMetrics") or {}, m.get("outputMetrics") or {}
    sr, sw = m.get("shuffleReadMetrics") or {}, m.get("shuffleWriteMetrics") or {}
    launch = _rest_time(t.get("launchTime"))
    duration = t.get("duration")
    return {
        "stage_id": stage_id,
        "attempt": attempt,
        "task_id": t.get("taskId"),
        "index": t.get("index"),
        "executor_id": t.get("executorId"),
        "host": t.get("host"),
        "launch_ms": launch,
        "finish_ms": launch + duration if launch is not None and duration is not None else None,
        "duration_s": duration / 1000 if duration is not None else np.nan,
        "run_time_s": m.get("executorRunTime", 0) / 1000,
        "cpu_time_s": m.get("executorCpuTime", 0) / 1e9,
        "gc_time_s": m.get("jvmGcTime", 0) / 1000,
        "input_bytes": inp.get("bytesRead", 0),
        "input_records": inp.get("recordsRead", 0),
        "output_bytes": out.get("bytesWritten", 0),
        "output_records": out.get("recordsWritten", 0),
        "shuffle_read_bytes": sr.get("remoteBytesRead", 0) + sr.get("localBytesRead", 0),
        "shuffle_write_bytes": sw.get("bytesWritten", 0),
        "status": t.get("status", "UNKNOWN").upper(),
    }


# -- shared shape -----------------------------------------------------------------------------


def _assemble(app_id, app_name, jobs, stages, tasks, executors) -> AppMetrics:
    task_df = pd.DataFrame(tasks, columns=TASK_COLUMNS)
    job_df = pd.DataFrame(
        jobs,
        columns=["job_id", "description", "submitted_ms", "completed_ms", "stage_ids", "status"],
    )
    job_df["duration_s"] = (job_df["completed_ms"] - job_df["submitted_ms"]) / 1000
    stage_df = pd.DataFrame(
        stages,
        columns=[
            "stage_id",
            "attempt",
            "name",
            "details",
            "description",
            "num_tasks",
            "submitted_ms",
            "completed_ms",
            "status",
        ],
    )
    stage_df["duration_s"] = (stage_df["completed_ms"] - stage_df["submitted_ms"]) / 1000
    stage_of_job = {s: j["job_id"] for j in jobs for s in j.get("stage_ids", [])}
    stage_df["job_id"] = stage_df["stage_id"].map(stage_of_job)
    # what the stage did: its job's description (set by helpers.spark.session.jobs_named)
    job_text = {j["job_id"]: j.get("description") or "" for j in jobs}
    stage_df["description"] = stage_df["description"].fillna(stage_df["job_id"].map(job_text))
    stage_df["description"] = stage_df["description"].fillna("")
    # Spark's call site: the first frame of the stage's details
    stage_df["call_site"] = stage_df["details"].fillna("").str.split("\n").str[0]
    stage_df = stage_df.merge(_stage_totals(task_df), on=["stage_id", "attempt"], how="left")
    stage_df["tasks_run"] = stage_df["tasks_run"].fillna(0).astype(int)  # skipped stages
    exec_df = pd.DataFrame(list(executors.values()), columns=["executor_id", "host", "cores"])
    exec_df = exec_df.merge(_executor_totals(task_df), on="executor_id", how="outer")
    return AppMetrics(
        app_id,
        app_name,
        job_df.sort_values("job_id").reset_index(drop=True),
        stage_df.sort_values(["stage_id", "attempt"]).reset_index(drop=True),
        task_df.sort_values(["stage_id", "attempt", "index", "task_id"]).reset_index(drop=True),
        exec_df.sort_values("executor_id").reset_index(drop=True),
    )


_SUMS = ["input_bytes", "input_records", "output_bytes", "output_records",
         "shuffle_read_bytes", "shuffle_write_bytes", "gc_time_s"]  # fmt: skip


def _stage_totals(tasks: pd.DataFrame) -> pd.DataFrame:
    grouped = tasks.groupby(["stage_id", "attempt"])
    totals = grouped[_SUMS].sum()
    totals["tasks_run"] = grouped.size()
    totals["task_time_s"] = grouped["duration_s"].sum()
    totals["task_min_s"] = grouped["duration_s"].min()
    totals["task_median_s"] = grouped["duration_s"].median()
    totals["task_p90_s"] = grouped["duration_s"].quantile(0.9)
    totals["task_max_s"] = grouped["duration_s"].max()
    # max / median task time: 1 is perfectly even; large values mean a straggler
    totals["skew"] = totals["task_max_s"] / totals["task_median_s"].where(
        totals["task_median_s"] > 0
    )
    return totals.reset_index()


def _executor_totals(tasks: pd.DataFrame) -> pd.DataFrame:
    grouped = tasks.groupby("executor_id")
    totals = grouped[
        ["input_bytes", "shuffle_read_bytes", "shuffle_write_bytes", "gc_time_s"]
    ].sum()
    totals["tasks"] = grouped.size()
    totals["task_time_s"] = grouped["duration_s"].sum()
    totals["gc_share"] = totals["gc_time_s"] / totals["task_time_s"].where(
        totals["task_time_s"] > 0
    )
    return totals.reset_index()


FEATURIZE = "featurize:"


def stage_summary(metrics: AppMetrics) -> pd.DataFrame:
    """One row per stage with the figures a person checks first: what it did (its job's
    description, Spark's stage name and call site), tasks, duration, the spread of task times
    (min, median, 90th percentile, max; skew = max / median), records, bytes, GC, and
    ``images_per_s`` for the stages that featurized images (rows written per second)."""
    cols = ["job_id", "stage_id", "attempt", "description", "name", "call_site", "status",
            "tasks_run", "duration_s", "images_per_s", "task_min_s", "task_median_s",
            "task_p90_s", "task_max_s", "skew", "input_records", "input_bytes",
            "output_records", "output_bytes", "shuffle_read_bytes", "shuffle_write_bytes",
            "gc_time_s"]  # fmt: skip
    stages = metrics.stages.copy()
    featurized = stages["description"].str.startswith(FEATURIZE) & (stages["output_records"] > 0)
    stages["images_per_s"] = (stages["output_records"] / stages["duration_s"]).where(featurized)
    return stages[cols]


def featurization(metrics: AppMetrics) -> dict | None:
    """The stage that featurized and wrote the images: its id, description, images, seconds
    and images/s (None when the application featurized nothing)."""
    summary = stage_summary(metrics)
    rows = summary.dropna(subset=["images_per_s"])
    if rows.empty:
        return None
    row = rows.sort_values("output_records").iloc[-1]
    return {
        "stage_id": int(row["stage_id"]),
        "description": row["description"],
        "spark_name": row["name"],
        "images": int(row["output_records"]),
        "tasks": int(row["tasks_run"]),
        "seconds": round(float(row["duration_s"]), 3),
        "images_per_s": round(float(row["images_per_s"]), 2),
        "skew": round(float(row["skew"]), 2) if pd.notna(row["skew"]) else None,
    }


def executor_timeline(metrics: AppMetrics, step_s: float | None = None) -> pd.DataFrame:
    """Task slots in use over time, per executor: one row per (time, executor) with
    ``running`` tasks, times in seconds since the first task started. ``step_s`` defaults to
    about 200 steps over the application.

    A task counts from its launch for its executor run time: its finish time is stamped when
    the driver has its result, after the next task may have taken the slot.
    """
    tasks = metrics.tasks.dropna(subset=["launch_ms", "run_time_s"]).copy()
    if tasks.empty:
        return pd.DataFrame(columns=["time_s", "executor_id", "running"])
    tasks["end_ms"] = tasks["launch_ms"] + tasks["run_time_s"] * 1000
    t0, t1 = tasks["launch_ms"].min(), tasks["end_ms"].max()
    step_ms = (step_s * 1000) if step_s else max((t1 - t0) / 200, 1.0)
    grid = np.arange(t0, t1 + step_ms, step_ms)
    rows = []
    for executor, group in tasks.groupby("executor_id"):
        starts = np.sort(group["launch_ms"].to_numpy())
        ends = np.sort(group["end_ms"].to_numpy())
        running = np.searchsorted(starts, grid, side="right") - np.searchsorted(
            ends, grid, side="right"
        )
        rows.append(
            pd.DataFrame(
                {"time_s": (grid - t0) / 1000, "executor_id": str(executor), "running": running}
            )
        )
    return pd.concat(rows, ignore_index=True)


def featurization_log(event_log_dir: str) -> Path:
    """The latest finished event log of an application that featurized images (notebook 02's,
    or a ``helpers run``): one with a job described ``featurize: ...``."""
    marker = f'"spark.job.description":"{FEATURIZE}'
    for path in reversed(list_event_logs(event_log_dir)):
        with path.open(encoding="utf-8", errors="replace") as lines:
            if any(marker in line and "SparkListenerJobStart" in line for line in lines):
                return path
    raise FileNotFoundError(f"no finished application that featurized images in {event_log_dir}")


def app_root(base: str, app: dict) -> str:
    """The REST root of one application as ``base`` (``.../api/v1/applications``) lists it.

    An application run in YARN cluster mode (an EMR step, a Livy session on EMR) has attempts
    with an id; the History Server answers its jobs and stages only under that attempt
    (``<app>/<attempt>/jobs``: ``<app>/jobs`` is a 404). The latest attempt is listed first."""
    attempts = app.get("attempts") or [{}]
    attempt = attempts[0].get("attemptId")
    return f"{base}/{app['id']}/{attempt}" if attempt else f"{base}/{app['id']}"


def _featurization_app(base: str, apps: list[dict], look_at: int = 20) -> dict | None:
    """Of the applications a REST server lists (newest first), the first that featurized."""
    for app in apps[:look_at]:
        jobs = _get_json(f"{app_root(base, app)}/jobs")
        if any((j.get("description") or "").startswith(FEATURIZE) for j in jobs):
            return app
    return None


def load(
    event_log_dir: str | None = None,
    app_id: str | None = None,
    ui_url: str | None = None,
    featurization_first: bool = True,
) -> AppMetrics:
    """Read an application from a REST endpoint or an event log folder.

    Args:
        event_log_dir: local folder of event logs (used when ``ui_url`` is None).
        app_id: the application; None picks the latest one that featurized images (or, with
            ``featurization_first=False``, the latest finished log / the REST server's first).
        ui_url: a Spark UI / History Server URL, or ``"active"`` for this process's session.
        featurization_first: see ``app_id``.
    """
    if ui_url:
        if ui_url == "active":
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession()
            if spark is None or not spark.sparkContext.uiWebUrl:
                raise ValueError("SPARK_UI_URL='active' needs a running Spark session with its UI")
            ui_url = spark.sparkContext.uiWebUrl
            app_id = app_id or spark.sparkContext.applicationId
        if app_id is None and featurization_first:
            base = ui_url.rstrip("/") + "/api/v1/applications"
            app = _featurization_app(base, _get_json(base))
            app_id = app["id"] if app else None
        return read_rest_api(ui_url, app_id)
    if not event_log_dir:
        raise ValueError("give an event log folder or a Spark UI URL")
    if app_id is None and featurization_first:
        return read_event_log(featurization_log(event_log_dir))
    logs = list_event_logs(event_log_dir)
    if app_id:
        logs = [p for p in logs if app_id in p.name]
    if not logs:
        which = f" for application {app_id}" if app_id else ""
        raise FileNotFoundError(f"no finished event log{which} in {event_log_dir}")
    return read_event_log(logs[-1])
