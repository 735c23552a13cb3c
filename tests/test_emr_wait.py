"""``emr wait`` ends on every final state of a step and of a cluster, never on a timeout it
could have avoided (botocore's Stubber plays EMR's answers, validated against its model)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from fruits_tools import emr

CLUSTER = "j-2AXXXXXXGAPLF"
STEPS = ["s-1AAAAAAAAAAAA", "s-2BBBBBBBBBBBB"]


def _step(step_id: str, state: str) -> dict:
    status = {"State": state}
    if state == "FAILED":
        status["FailureDetails"] = {"Reason": "Unknown Error.", "LogFile": "s3://b/logs/"}
    return {"Step": {"Id": step_id, "Name": f"step {step_id}", "Status": status}}


def _cluster(state: str, code: str = "", message: str = "") -> dict:
    reason = {"Code": code, "Message": message} if code else {}
    status = {"State": state, "StateChangeReason": reason}
    return {"Cluster": {"Id": CLUSTER, "Name": "fruits", "Status": status}}


class Emr:
    """A stubbed EMR client: each ``poll`` is what one round of the wait loop sees."""

    def __init__(self):
        self.client = boto3.client(
            "emr", region_name="eu-west-3", aws_access_key_id="k", aws_secret_access_key="s"
        )
        self.stub = Stubber(self.client)

    def step(self, step_id: str, state: str) -> None:
        self.stub.add_response(
            "describe_step", _step(step_id, state), {"ClusterId": CLUSTER, "StepId": step_id}
        )

    def cluster(self, state: str, **reason) -> None:
        self.stub.add_response(
            "describe_cluster", _cluster(state, **reason), {"ClusterId": CLUSTER}
        )

    def outcome(self, cluster: str, states: dict[str, str], **reason) -> None:
        self.cluster(cluster, **reason)
        for step_id in STEPS:
            self.step(step_id, states[step_id])


def _wait(fake: Emr, **options) -> tuple[emr.RunOutcome, list[float]]:
    slept: list[float] = []
    launcher = emr.Launcher(emr.ClusterSpec(bucket="b"), client=fake.client, s3=object())
    with fake.stub:
        outcome = launcher.wait(CLUSTER, STEPS, poll_s=5, sleep=slept.append, **options)
        fake.stub.assert_no_pending_responses()
    return outcome, slept


def _report(outcome: emr.RunOutcome) -> list[str]:
    """The launcher's report, with no driver log in the bucket yet."""
    s3 = boto3.client(
        "s3", region_name="eu-west-3", aws_access_key_id="k", aws_secret_access_key="s"
    )
    launcher = emr.Launcher(emr.ClusterSpec(bucket="b"), s3=s3)
    launcher._owner = "123456789012"
    with Stubber(s3) as stub:
        for _ in range(2):  # the step's stderr, and nothing under the logs
            stub.add_client_error("get_object", "NoSuchKey", http_status_code=404)
        return launcher.report(outcome)


@pytest.mark.parametrize("final", ["COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"])
def test_each_final_step_state_ends_the_wait(final):
    fake = Emr()
    fake.step(STEPS[0], "RUNNING")
    fake.cluster("RUNNING")
    fake.step(STEPS[0], "COMPLETED")
    fake.step(STEPS[1], final)
    fake.cluster("WAITING")
    fake.outcome("WAITING", {STEPS[0]: "COMPLETED", STEPS[1]: final})
    outcome, slept = _wait(fake)
    assert slept == [5]  # one poll while the first step ran, none after the last one ended
    assert outcome.ok is (final == "COMPLETED")
    assert outcome.summary()["steps"] == {STEPS[0]: "COMPLETED", STEPS[1]: final}
    report = _report(outcome)
    if final != "COMPLETED":
        assert report[0] == f"step {STEPS[1]} (step {STEPS[1]}): {final}"


def test_an_interrupted_first_step_does_not_wait_for_the_timeout():
    """The case boto3's step_complete waiter missed: INTERRUPTED matched no acceptor."""
    fake = Emr()
    fake.step(STEPS[0], "INTERRUPTED")
    fake.step(STEPS[1], "CANCELLED")
    fake.cluster("TERMINATING")
    fake.outcome("TERMINATING", {STEPS[0]: "INTERRUPTED", STEPS[1]: "CANCELLED"})
    outcome, slept = _wait(fake, timeout_s=60)
    assert slept == [] and not outcome.ok


@pytest.mark.parametrize("final", ["TERMINATED", "TERMINATED_WITH_ERRORS"])
def test_a_cluster_that_ends_under_a_running_step_ends_the_wait_with_its_reason(final):
    fake = Emr()
    fake.step(STEPS[0], "RUNNING")
    fake.cluster(final, code="INSTANCE_FAILURE", message="Primary node lost")
    fake.outcome(final, {STEPS[0]: "RUNNING", STEPS[1]: "PENDING"},
                 code="INSTANCE_FAILURE", message="Primary node lost")  # fmt: skip
    outcome, slept = _wait(fake)
    assert slept == [] and not outcome.ok
    report = _report(outcome)
    assert report[-1] == f"cluster {CLUSTER}: {final} (INSTANCE_FAILURE: Primary node lost)"


def test_a_one_shot_run_waits_for_the_cluster_to_end_after_its_steps():
    fake = Emr()
    for step_id in STEPS:
        fake.step(step_id, "COMPLETED")
    fake.cluster("TERMINATING")
    fake.cluster("TERMINATED", code="ALL_STEPS_COMPLETED", message="Steps completed")
    fake.outcome("TERMINATED", dict.fromkeys(STEPS, "COMPLETED"),
                 code="ALL_STEPS_COMPLETED", message="Steps completed")  # fmt: skip
    outcome, slept = _wait(fake, until_terminated=True)
    assert slept == [5] and outcome.ok and outcome.cluster_state == "TERMINATED"


def test_a_step_still_running_at_the_timeout_is_one_line():
    fake = Emr()
    fake.step(STEPS[0], "RUNNING")
    fake.cluster("RUNNING")
    launcher = emr.Launcher(emr.ClusterSpec(bucket="b"), client=fake.client, s3=object())
    with fake.stub, pytest.raises(TimeoutError) as caught:
        launcher.wait(CLUSTER, STEPS, poll_s=5, timeout_s=0, sleep=lambda s: None)
    assert str(caught.value) == (
        f"{CLUSTER}: still waiting for step {STEPS[0]} after 0 s (cluster RUNNING)"
    )


EXECUTION = "ex-J00000000000000000000"


def _execution(status: str) -> dict:
    execution = {"NotebookExecutionId": EXECUTION, "Status": status}
    if status in ("FAILED", "STOPPED"):
        execution["LastStateChangeReason"] = f"{status.lower()}: cell 4 raised"
    if status == "FINISHED":
        execution["OutputNotebookURI"] = "s3://b/fruits/output/notebooks-studio/03_pca.html"
    return {"NotebookExecution": execution}


@pytest.mark.parametrize(
    "passing, final",
    [(["START_PENDING", "STARTING", "RUNNING", "FINISHING"], "FINISHED"),
     (["STARTING", "RUNNING", "FAILING"], "FAILED"),
     (["RUNNING", "STOP_PENDING", "STOPPING"], "STOPPED")],
)  # fmt: skip
def test_each_final_notebook_execution_state_ends_the_wait(passing, final):
    """``emr notebooks-execution`` waits through every passing state and returns on each final
    one, with EMR's reason (boto3 has no waiter for notebook executions)."""
    fake = Emr()
    for status in [*passing, final]:
        fake.stub.add_response(
            "describe_notebook_execution", _execution(status), {"NotebookExecutionId": EXECUTION}
        )
    slept: list[float] = []
    launcher = emr.Launcher(emr.ClusterSpec(bucket="b"), client=fake.client, s3=object())
    with fake.stub:
        execution = launcher.wait_notebook_execution(EXECUTION, poll_s=5, sleep=slept.append)
        fake.stub.assert_no_pending_responses()
    assert execution["Status"] == final and slept == [5] * len(passing)
    assert final in emr.NOTEBOOK_EXECUTION_FINAL


def test_a_notebook_execution_still_running_at_the_timeout_is_one_line():
    fake = Emr()
    fake.stub.add_response(
        "describe_notebook_execution", _execution("RUNNING"), {"NotebookExecutionId": EXECUTION}
    )
    launcher = emr.Launcher(emr.ClusterSpec(bucket="b"), client=fake.client, s3=object())
    with fake.stub, pytest.raises(TimeoutError, match=f"^notebook execution {EXECUTION} still"):
        launcher.wait_notebook_execution(EXECUTION, poll_s=5, timeout_s=0, sleep=lambda s: None)
