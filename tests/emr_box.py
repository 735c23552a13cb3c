"""EMR in a box: what an EMR cluster runs, run on this machine for real.

- :func:`emr_spark_home`: EMR 7.13's Spark (3.5.6, Scala 2.12) laid out as EMR installs it in
  ``/usr/lib/spark`` (``bin/``, ``jars/``, ``python/pyspark``, ``python/lib/py4j-*.zip`` and
  ``pyspark.zip``), from the PyPI source distribution of the same version, which carries the
  whole distribution. Cached once per machine under ``~/.cache/fruits``.
- :func:`run_bootstrap`: ``emr/bootstrap.sh`` executed (not a dry run) into a prefix, with the
  locally built wheel, before any Spark exists there; :func:`install_spark` then puts Spark
  where the bootstrap was told EMR would, as EMR does after bootstrap actions.
- :class:`YarnMiniCluster`: a real YARN ResourceManager + NodeManager on loopback (Hadoop's CLI
  MiniCluster, ``java -cp``, no HDFS), jars from ``emr/rehearsal/fetch_jars.sh``.
- :func:`emr_conf_dir`: ``spark-defaults.conf`` / ``spark-env.sh`` from ``emr/configurations.json``
  plus the defaults EMR itself writes (``spark.master yarn``, event logs to a folder that exists).

Run ``python -m tests.emr_box --help`` for a standalone cluster to poke at by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
REHEARSAL = ROOT / "emr" / "rehearsal"
CACHE = Path(os.environ.get("FRUITS_CACHE_DIR", Path.home() / ".cache" / "fruits"))
#: EMR 7.13's Spark; keep in step with fruits_tools.emr.DEFAULT_RELEASE (a test checks).
EMR_SPARK_VERSION = "3.5.6"
#: Hadoop 3.x on Java 17 needs these opened (Guice and Jetty reflect into java.base).
JAVA_OPENS = [
    f"--add-opens=java.base/{p}=ALL-UNNAMED"
    for p in ("java.lang", "java.lang.reflect", "java.util", "java.io", "java.net", "sun.nio.ch")
]


def fetch_jars(name: str) -> Path:
    """A folder of jars (``s3a``, ``s3a-emr``, ``yarn`` or ``sparkmeasure``), fetched from Maven
    Central once per machine."""
    done = subprocess.run(
        ["bash", str(REHEARSAL / "fetch_jars.sh"), name],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"fetch_jars.sh {name} failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def java_home() -> str:
    """JAVA_HOME, or the installation the ``java`` on PATH belongs to."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if not java:
        raise RuntimeError("java not found: install a Java 17 runtime")
    return str(Path(os.path.realpath(java)).parent.parent)


def emr_spark_home(version: str = EMR_SPARK_VERSION) -> Path:
    """EMR's Spark installation layout, built once from pyspark's source distribution."""
    home = CACHE / f"spark-{version}"
    if (home / ".complete").exists():
        return home
    work = CACHE / f"spark-{version}.download"
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    work.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         "-d", str(work), f"pyspark=={version}"],
        check=True, timeout=1800,
    )  # fmt: skip
    archive = next(work.glob(f"pyspark-{version}.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="tar")
    src = work / f"pyspark-{version}"
    home.mkdir(parents=True)
    for part in ("bin", "sbin", "jars", "data", "licenses"):
        if (src / "deps" / part).exists():
            shutil.move(str(src / "deps" / part), str(home / part))
    (home / "python" / "lib").mkdir(parents=True)
    shutil.move(str(src / "pyspark"), str(home / "python" / "pyspark"))
    for zipped in (src / "lib").glob("*.zip"):
        shutil.move(str(zipped), str(home / "python" / "lib" / zipped.name))
    (home / "conf").mkdir()
    (home / "RELEASE").write_text(f"Spark {version} (from the pyspark {version} sdist)\n")
    shutil.rmtree(work)
    (home / ".complete").touch()
    return home


@contextlib.contextmanager
def building_from_the_clone():
    """Held while pip builds the project from the clone: setuptools builds in the clone's own
    ``build/`` and ``*.egg-info``, which two test workers building at once would tear."""
    import fcntl

    with open(Path(tempfile.gettempdir()) / "fruits-tests-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def build_wheel(dest: Path) -> Path:
    """The project's wheel, as ``pip wheel --no-deps`` makes it for ``emr stage``."""
    dest.mkdir(parents=True, exist_ok=True)
    with building_from_the_clone():
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
             "-w", str(dest), str(ROOT)],
            check=True, timeout=600,
        )  # fmt: skip
    return next(dest.glob("fruits_helpers-*.whl"))


def run_bootstrap(
    prefix: Path, wheel: Path, primary: bool = True, python: str = "python3.11"
) -> subprocess.CompletedProcess:
    """Execute ``emr/bootstrap.sh`` into ``prefix``; Spark is expected at ``prefix/spark``
    (absent now, as on EMR when bootstrap actions run)."""
    info = prefix / "instance.json"
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(json.dumps({"isMaster": primary, "isRunningResourceManager": primary}))
    return subprocess.run(
        ["bash", str(ROOT / "emr" / "bootstrap.sh"), "--wheel", str(wheel),
         "--venv", str(prefix / "venv"), "--python", python,
         "--instance-info", str(info), "--spark-home", str(prefix / "spark"), "--no-sudo"],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def install_spark(prefix: Path) -> Path:
    """Put EMR's Spark at ``prefix/spark`` (what EMR does after the bootstrap actions)."""
    target = prefix / "spark"
    if not target.exists():
        target.symlink_to(emr_spark_home(), target_is_directory=True)
    return target


def aws_on_path(folder: Path, path: str) -> str:
    """``path`` with the AWS CLI that the bootstrap and the notebooks step call (the test
    environment's; EMR's nodes have v2) in ``folder`` before the rest. Only ``aws`` is added,
    so ``python3.11`` and the rest are still the system's."""
    found = Path(sys.executable).parent / "aws"
    assert found.is_file(), "the AWS CLI is a test dependency (pyproject.toml [test])"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "aws").symlink_to(found)
    return f"{folder}{os.pathsep}{path}"


def s3a_classpath() -> str:
    """The S3A connector of Spark 3.5.6's Hadoop, with its AWS SDK: a classpath entry."""
    return f"{fetch_jars('s3a-emr')}/*"


def s3a_local_settings(endpoint: str, region: str) -> dict[str, str]:
    """spark-defaults for the local Spark 4 (the project's venv) reaching ``endpoint`` through
    S3A: the connector's jars (``fetch_jars.sh s3a``), path-style, no TLS, no UI."""
    jars = fetch_jars("s3a")
    return {
        "spark.jars": ",".join(str(p) for p in sorted(jars.glob("*.jar"))),
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.ui.enabled": "false",
    }


def s3a_settings(endpoint: str, region: str, credentials: dict[str, str]) -> dict[str, str]:
    """Spark settings that give EMR's Spark 3.5.6 ``s3://`` through S3A (hadoop-aws of its
    Hadoop 3.3.4) against ``endpoint``, where EMR has EMRFS (closed source). The driver (in the
    application master or the client) and the executors get the credentials in their
    environment: the standard credential chain, as an instance profile gives them on EMR."""
    classpath = s3a_classpath()
    settings = {
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.AbstractFileSystem.s3.impl": "org.apache.hadoop.fs.s3a.S3A",
        "spark.hadoop.fs.s3a.endpoint": endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        # S3A 3.3's default deletes every parent "dir/" marker after each write (a bulk delete
        # of keys like fruits/), which EMRFS never does; 3.4's default keeps them
        "spark.hadoop.fs.s3a.directory.marker.retention": "keep",
        "spark.driver.extraClassPath": classpath,
        "spark.executor.extraClassPath": classpath,
    }
    for side in ("spark.yarn.appMasterEnv", "spark.executorEnv"):
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            settings[f"{side}.{name}"] = credentials[name]
        settings[f"{side}.AWS_ENDPOINT_URL_S3"] = endpoint
    return settings


def _without_s3a_defaults(written: Path, target: Path) -> None:
    """The minicluster's configuration without its ``fs.s3a.*`` entries: it writes every
    property it resolved, Hadoop 3.4.1's S3A defaults included ("60s", "24h"), which Spark
    3.5.6's hadoop-aws 3.3.4 reads as numbers and refuses. An EMR node's Hadoop has its own."""
    import xml.etree.ElementTree as ET

    tree = ET.parse(written)
    root = tree.getroot()
    for prop in list(root.findall("property")):
        if (prop.findtext("name") or "").startswith("fs.s3a."):
            root.remove(prop)
    tree.write(target, encoding="utf-8", xml_declaration=True)


class YarnMiniCluster:
    """A YARN ResourceManager and one NodeManager on 127.0.0.1 (no HDFS: ``file://``)."""

    def __init__(self, workdir: Path, memory_mb: int = 20480):
        self.workdir = workdir
        self.memory_mb = memory_mb
        self.conf_dir = workdir / "hadoop-conf"
        self.process: subprocess.Popen | None = None
        self.web = ""

    def start(self, timeout_s: float = 180, attempts: int = 2) -> YarnMiniCluster:
        """Start and wait for a NodeManager; new ports once if a fixed one was taken meanwhile."""
        for attempt in range(1, attempts + 1):
            try:
                return self._start(timeout_s)
            except RuntimeError as error:
                if "BindException" not in str(error) or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start(self, timeout_s: float) -> YarnMiniCluster:
        jars = fetch_jars("yarn")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.conf_dir.mkdir(exist_ok=True)
        ports = {name: free_port() for name in ("rm", "jhs", "sched", "tracker", "admin", "web")}
        self.web = f"http://127.0.0.1:{ports['web']}"
        settings = {
            "yarn.resourcemanager.scheduler.address": f"127.0.0.1:{ports['sched']}",
            "yarn.resourcemanager.resource-tracker.address": f"127.0.0.1:{ports['tracker']}",
            "yarn.resourcemanager.admin.address": f"127.0.0.1:{ports['admin']}",
            "yarn.resourcemanager.webapp.address": f"127.0.0.1:{ports['web']}",
            "mapreduce.jobhistory.admin.address": f"127.0.0.1:{free_port()}",
            "mapreduce.jobhistory.webapp.address": f"127.0.0.1:{free_port()}",
            "yarn.nodemanager.hostname": "127.0.0.1",
            "yarn.nodemanager.vmem-check-enabled": "false",
            "yarn.nodemanager.pmem-check-enabled": "false",
            "yarn.minicluster.yarn.nodemanager.resource.memory-mb": str(self.memory_mb),
            "yarn.scheduler.maximum-allocation-mb": str(self.memory_mb),
            # keep container logs after the application ends, for the tests and for a person
            "yarn.nodemanager.delete.debug-delay-sec": "3600",
        }
        written = self.workdir / "minicluster-conf.xml"
        command = [
            "java", "-Xmx1g", *JAVA_OPENS, "-cp", f"{jars}/*",
            "org.apache.hadoop.mapreduce.MiniHadoopClusterManager", "-nodfs",
            "-rmport", str(ports["rm"]), "-jhsport", str(ports["jhs"]),
            "-writeConfig", str(written),
        ]  # fmt: skip
        for key, value in settings.items():
            command += ["-D", f"{key}={value}"]
        env = {**os.environ, "JAVA_HOME": java_home()}
        self.log = (self.workdir / "minicluster.log").open("w")
        self.process = subprocess.Popen(
            command, cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + timeout_s
        while not self._nodes_running():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.workdir / "minicluster.log").read_text()[-3000:]
                raise RuntimeError(f"the YARN minicluster did not start:\n{tail}")
            time.sleep(1)
        while not written.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the YARN minicluster wrote no configuration to {written}")
            time.sleep(0.5)
        time.sleep(0.5)  # written in one go, but let it close
        _without_s3a_defaults(written, self.conf_dir / "yarn-site.xml")
        return self

    def _nodes_running(self) -> bool:
        # JMX, not the REST API: in one JVM the NodeManager's and history server's web apps
        # take over the ResourceManager's Guice routes, and /ws/v1/cluster answers 404.
        try:
            url = f"{self.web}/jmx?qry=Hadoop:service=ResourceManager,name=ClusterMetrics"
            with urllib.request.urlopen(url, timeout=5) as response:
                beans = json.load(response)["beans"]
        except (OSError, ValueError, KeyError):
            return False
        return bool(beans) and beans[0].get("NumActiveNMs", 0) >= 1

    def yarn(self, *args: str) -> str:
        """Run YARN's own command line (``yarn application ...``) against this cluster."""
        done = subprocess.run(
            ["java", "-Xmx256m", "-cp", f"{self.conf_dir}:{fetch_jars('yarn')}/*",
             "org.apache.hadoop.yarn.client.cli.ApplicationCLI", *args],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "JAVA_HOME": java_home()},
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"yarn {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def application_report(self, app_id: str) -> dict[str, str]:
        """``yarn application -status``: Application-Id, State, Final-State, Queue, ..."""
        report = {}
        for line in self.yarn("application", "-status", app_id).splitlines():
            key, sep, value = line.strip().partition(" : ")
            if sep:
                report[key.strip()] = value.strip()
        return report

    def application_ids(self) -> list[str]:
        listing = self.yarn("application", "-list", "-appStates", "ALL")
        return sorted(w for w in listing.split() if w.startswith("application_"))

    def container_logs(self, app_id: str) -> list[Path]:
        """The stdout/stderr files of every container of an application."""
        return sorted(self.workdir.glob(f"target/**/{app_id}/container_*/std*"))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self) -> YarnMiniCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def emr_conf_dir(
    target: Path,
    venv: Path,
    spark_home: Path,
    event_log_dir: Path,
    extra: dict | None = None,
    classpath: str | None = None,
    project_configuration: bool = True,
) -> Path:
    """``SPARK_CONF_DIR`` as an EMR 7 primary node has it, with this project's configuration
    (or, ``project_configuration=False``, as a cluster someone else made has it: EMR's
    defaults only).

    EMR's own defaults that matter here come first (``spark.master yarn``, event logs in a
    folder that exists before any application); ``emr/configurations.json`` on top, with the
    environment path moved to ``venv``. Two stand-ins for the box: Spark's jars are used where
    they lie (``local:``, as on every EMR node), and dynamic allocation tracks shuffle files
    itself, since the minicluster's NodeManager runs no Spark shuffle service (EMR's do); and
    executors sized for 2 cores. ``classpath`` goes to ``SPARK_DIST_CLASSPATH``, where an EMR
    node's spark-env puts its S3 file system for every Spark JVM, spark-submit's own included
    (it reads a step's ``s3://`` entry point and jars itself).
    """
    from fruits_tools.emr import ClusterSpec, render_configurations

    event_log_dir.mkdir(parents=True, exist_ok=True)
    defaults = {
        "spark.master": "yarn",
        "spark.submit.deployMode": "client",
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": event_log_dir.as_uri(),
        "spark.yarn.jars": f"local:{spark_home.resolve()}/jars/*",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        # everything on loopback: the driver (in the AM container) and the executors bind
        # and advertise 127.0.0.1, not the machine's other addresses
        "spark.yarn.appMasterEnv.SPARK_LOCAL_IP": "127.0.0.1",
        "spark.executorEnv.SPARK_LOCAL_IP": "127.0.0.1",
        "spark.driver.host": "127.0.0.1",
    }
    exports: dict[str, str] = {}
    project = render_configurations(ClusterSpec(bucket="rehearsal"))
    for classification in project if project_configuration else []:
        if classification["Classification"] == "spark-defaults":
            defaults.update(classification["Properties"])
        if classification["Classification"] == "spark-env":
            for inner in classification.get("Configurations", []):
                exports.update(inner.get("Properties", {}))
    # the box has 2 cores where an m5.xlarge node has 4: two executors of two task slots each,
    # so no more Python workers (each loading TensorFlow) than the machine can run
    defaults.update({"spark.executor.cores": "2", "spark.dynamicAllocation.maxExecutors": "2"})
    defaults.update(extra or {})
    if classpath:
        exports["SPARK_DIST_CLASSPATH"] = classpath

    def relocate(value: str) -> str:
        return value.replace("/opt/fruits-venv", str(venv))

    target.mkdir(parents=True, exist_ok=True)
    (target / "spark-defaults.conf").write_text(
        "".join(f"{k} {relocate(v)}\n" for k, v in defaults.items())
    )
    (target / "spark-env.sh").write_text(
        "".join(f"export {k}={relocate(v)}\n" for k, v in exports.items())
    )
    return target


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Start a YARN minicluster on 127.0.0.1")
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args()
    with YarnMiniCluster(args.workdir) as cluster:
        print(f"HADOOP_CONF_DIR={cluster.conf_dir}  ResourceManager UI {cluster.web}")
        print("Ctrl-C stops it.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
