"""The pure parts of the Slurm step (scheduler.slurm_jobs, scheduler.slurm_requests): job
names, Slurm's pending reasons in words, the GRES asked for each chip kind. The step itself
runs against a real cluster in tests/integration/test_slurm_pool.py."""

import pytest

from portal.reasons import render
from scheduler.slurm_jobs import reason_for
from scheduler.slurm_requests import GRES_OF, job_name, task_of
from scheduler.slurm_rest import SlurmJob


def job(reason="", state="PENDING", job_id=7, leader=None, offset=0):
    return SlurmJob(id=job_id, het_job_id=leader, het_offset=offset, state=state,
                    reason=reason, partition="tpu", nodes=[])


def test_a_job_name_says_its_instance_and_task_and_nothing_else_matches():
    name = job_name("abc123", 42)
    assert name == "hourglass-abc123-42"
    assert task_of("abc123", name) == 42
    for other in ("hourglass-other-42", "hourglass-abc123-", "hourglass-abc123-4x",
                  "hourglass-abc123--1", "train", ""):
        assert task_of("abc123", other) is None


@pytest.mark.parametrize(("slurm", "words"), [
    ("Resources", "waiting for resources in partition tpu"),
    ("Priority", "waiting behind higher-priority jobs in partition tpu"),
    ("ReqNodeNotAvail, UnavailableNodes:node2", "waiting: the nodes it needs in partition tpu "
                                                 "are unavailable (down, drained or reserved)"),
    ("PartitionTimeLimit", "waiting: it is above a limit of partition tpu "
                           "(Slurm: PartitionTimeLimit)"),
    ("AssocGrpGRES", "waiting: it is above a limit of partition tpu (Slurm: AssocGrpGRES)"),
    ("Dependency", "waiting in partition tpu (Slurm: Dependency)"),
    ("", "being submitted to Slurm partition tpu"),
])
def test_slurms_pending_reason_in_words(slurm, words):
    reason = reason_for(job(slurm), "tpu")
    assert render(reason.code, reason.params) == words


def test_every_chip_kind_slurm_may_have_is_asked_for_by_its_gres():
    assert GRES_OF == {"sophgo.com/bm1684x": "tpu:bm1684x", "sophgo.com/bm1684": "tpu:bm1684",
                       "nvidia.com/gpu": "gpu"}
