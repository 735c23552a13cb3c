"""The nodes' disks: a root volume sized for the bootstrap's environment, and a bootstrap that
checks free space before it writes anything."""

from __future__ import annotations

import subprocess

from fruits_tools import cli, emr
from tests.conftest import ROOT

BOOTSTRAP = ROOT / "emr" / "bootstrap.sh"


def test_the_launch_sets_the_root_volume_and_prices_it():
    spec = emr.ClusterSpec(bucket="b")
    assert emr.run_job_flow_request(spec)["EbsRootVolumeSize"] == emr.ROOT_VOLUME_GB == 20
    args = cli.build_parser().parse_args(
        ["emr", "create", "--bucket", "b", "--root-volume-gb", "30"]
    )
    assert cli._cluster_spec(args).root_volume_gb == 30
    line = emr.estimate_cost(emr.ClusterSpec(bucket="b", root_volume_gb=30), hours=1)["line"]
    assert "EBS 282 GB" in line  # 3 nodes x (64 + 30)


def test_the_bootstrap_refuses_a_small_disk_in_one_line(tmp_path):
    done = subprocess.run(
        ["bash", str(BOOTSTRAP), "--wheel", str(tmp_path / "x.whl"), "--venv",
         str(tmp_path / "venv"), "--need-mb", "999999999", "--no-sudo"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert (
        line.startswith("bootstrap: ")
        and f"MB free for {tmp_path / 'venv'}, 999999999 MB needed" in line
    )
    assert not (tmp_path / "venv").exists()  # nothing written before the check


def test_the_bootstrap_needs_a_region_to_copy_from_s3(tmp_path):
    done = subprocess.run(
        ["bash", str(BOOTSTRAP), "--wheel", "s3://b/fruits/code/x.whl", "--no-sudo"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "bootstrap: --region is required to copy from s3:// "
        "(a private subnet reaches only S3's regional endpoint)"
    )
