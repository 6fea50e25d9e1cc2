"""Reading slurmrestd's answers: GRES strings, a job's chips by node, hostlists, exit codes, and
Slurm's errors in each of their shapes. The answers are ``slurm_answers.json``: what the
tests' real cluster (tests.slurm_cluster, Slurm 22.05.8) answered, working folders renamed."""

import json
import socket
from pathlib import Path

import pytest

from portal.slurm import SlurmError
from scheduler.slurm_rest import (
    INVALID_JOB_ID,
    SlurmClient,
    SlurmRefused,
    check_answer,
    client_for,
    exit_status,
    expand_hostlist,
    parse_gres,
    parse_gres_detail,
    parse_job,
    parse_node,
    parse_ranges,
)

ANSWERS = json.loads((Path(__file__).parent / "slurm_answers.json").read_text())


def answer(name):
    """(HTTP status, body as sent) of captured answer ``name``."""
    captured = ANSWERS[name]
    return captured["status"], json.dumps(captured["body"]).encode()


def refusal(name, what="the request"):
    with pytest.raises(SlurmRefused) as caught:
        check_answer(*answer(name), what)
    return caught.value


@pytest.mark.parametrize("text, expected", [
    ("tpu:bm1684x:3", {("tpu", "bm1684x"): 3}),
    ("tpu:3", {("tpu", ""): 3}),
    ("tpu:bm1684x", {("tpu", "bm1684x"): 1}),
    ("gpu:a100:2(S:0-1),tpu:bm1684x:3", {("gpu", "a100"): 2, ("tpu", "bm1684x"): 3}),
    ("gpu:a100:1,gpu:a100:1", {("gpu", "a100"): 2}),
    ("", {}),
    ("(null)", {}),
])
def test_gres_of_a_node(text, expected):
    assert parse_gres(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("tpu:bm1684x:2(IDX:0-1)", {("tpu", "bm1684x"): [0, 1]}),
    ("tpu:bm1684x:3(IDX:0,2-3)", {("tpu", "bm1684x"): [0, 2, 3]}),
    ("tpu:bm1684x:2(IDX:0,2)", {("tpu", "bm1684x"): [0, 2]}),
    ("gpu:a100:1(IDX:3),tpu:bm1684x:2(IDX:0,2)",
     {("gpu", "a100"): [3], ("tpu", "bm1684x"): [0, 2]}),
    ("tpu:2(IDX:4-5)", {("tpu", ""): [4, 5]}),
    ("tpu:bm1684x(CNT:2)", {}),  # a GRES without device files has no indices
    ("tpu:bm1684x:0(IDX:N/A)", {}),
])
def test_a_jobs_chips_on_a_node(text, expected):
    assert parse_gres_detail(text) == expected


def test_ranges_and_hostlists():
    assert parse_ranges("0,2-3") == [0, 2, 3]
    assert expand_hostlist("node[1-2]") == ["node1", "node2"]
    assert expand_hostlist("node[1-2,5],gpu7") == ["node1", "node2", "node5", "gpu7"]
    assert expand_hostlist("n[08-10]") == ["n08", "n09", "n10"]
    assert expand_hostlist("rack[1-2]-n[1-2]") == ["rack1-n1", "rack1-n2", "rack2-n1",
                                                   "rack2-n2"]
    assert expand_hostlist("") == []


def test_exit_status_of_a_wait_status():
    assert exit_status(0) == 0
    assert exit_status(3 << 8) == 3
    assert exit_status(15) == 128 + 15  # killed by SIGTERM: a cancelled job's batch script
    assert exit_status(9) == 128 + 9


def test_nodes_idle_busy_and_drained():
    (first, second) = [parse_node(n) for n in ANSWERS["nodes"]["body"]["nodes"]]
    assert (first.name, second.name) == ("node1", "node2")
    assert second.address == "127.0.0.1" and second.hostname == "localhost"
    assert (second.state, second.flags, second.reason) == ("idle", [], "")
    assert (second.cpus, second.memory_mib) == (2, 1024)
    assert second.gres == {("tpu", "bm1684x"): 3}
    assert second.partitions == ["tpu"]
    busy = parse_node(ANSWERS["nodes_busy"]["body"]["nodes"][0])
    assert (busy.state, busy.flags) == ("mixed", ["PLANNED"])
    drained = parse_node(ANSWERS["nodes_drain"]["body"]["nodes"][1])
    assert (drained.state, drained.flags, drained.reason) == ("idle", ["DRAIN"], "maintenance")


def test_a_running_heterogeneous_job():
    leader, second = [parse_job(j) for j in ANSWERS["job_het_running"]["body"]["jobs"]]
    assert (leader.id, leader.het_job_id, leader.het_offset) == (1, 1, 0)
    assert (second.id, second.het_job_id, second.het_offset) == (2, 1, 1)
    assert (leader.state, leader.reason, leader.partition) == ("RUNNING", "", "tpu")
    assert leader.nodes == ["node1"] and second.nodes == ["node2"]
    assert leader.gres_detail == {"node1": {("tpu", "bm1684x"): [0, 1]}}
    assert second.gres_detail == {"node2": {("tpu", "bm1684x"): [0, 1]}}
    assert leader.start > 0 and leader.end > leader.start
    assert leader.exit_code == 0


def test_a_pending_job_then_a_cancelled_one():
    pending = parse_job(ANSWERS["job_het_pending"]["body"]["jobs"][0])
    assert (pending.state, pending.reason, pending.nodes) == ("PENDING", "", [])
    assert (pending.gres_detail, pending.start, pending.end) == ({}, None, None)
    cancelled = parse_job(ANSWERS["job_het_cancelled"]["body"]["jobs"][1])
    assert (cancelled.state, cancelled.nodes, cancelled.gres_detail) == ("CANCELLED", ["node2"],
                                                                          {})
    assert cancelled.exit_code == 128 + 15


def test_a_job_holding_chips_with_a_gap():
    (job,) = [parse_job(j) for j in ANSWERS["job_idx_gap"]["body"]["jobs"]]
    assert job.het_job_id is None and job.het_offset == 0
    assert job.gres_detail == {"node1": {("tpu", "bm1684x"): [0, 2]}}


def test_answers_without_errors_pass():
    assert check_answer(*answer("ping"))["pings"][0]["ping"] == "UP"
    assert check_answer(*answer("submit_het"))["job_id"] == 1


def test_errors_of_a_load_name_slurms_error_and_description():
    error = refusal("job_unknown", "GET /job/999999")
    assert error.errno == INVALID_JOB_ID
    assert str(error) == ("Slurm refused GET /job/999999: Invalid job id specified "
                          "(Unable to find JobId=999999).")
    assert refusal("cancel_unknown").errno == INVALID_JOB_ID


def test_errors_of_a_submit_and_of_the_node_list():
    error = refusal("submit_too_many", "POST /job/submit")
    assert (error.errno, str(error)) == (
        2014, "Slurm refused POST /job/submit: Requested node configuration is not available.")
    assert str(refusal("submit_bad_partition")).endswith("Invalid partition name specified.")
    no_env = refusal("submit_no_env")
    assert str(no_env).endswith("environment must be set; Failure during parsing.")
    unknown = refusal("submit_unknown_key")  # a first entry with only a description
    assert str(unknown).endswith('Unknown key "tres_per_node"; Failure during parsing.')
    assert unknown.errno == 9001
    node = refusal("node_unknown")
    assert (node.errno, str(node)) == (2018, "Slurm refused the request: Invalid node name "
                                             "specified.")


@pytest.mark.parametrize("status, body, message", [
    (401, b"Authentication failure", "slurmrestd refused the credentials (HTTP 401)"),
    (404, b"", "slurmrestd answered GET /nodes with HTTP 404 with no JSON."),
    (200, b"<html>", "slurmrestd answered GET /nodes with HTTP 200 with no JSON."),
    (502, b'{"errors": []}', "slurmrestd answered GET /nodes with HTTP 502."),
])
def test_http_errors(status, body, message):
    with pytest.raises(SlurmError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_answer(status, body, "GET /nodes")


class Row:
    """What ``client_for`` reads of a SlurmCluster row."""

    def __init__(self, rest_url, user="", token=""):
        self.rest_url, self.user, self.token = rest_url, user, token


def test_clients_of_each_address():
    local = client_for(Row("unix:///run/slurmrestd.sock"))
    assert (local.scheme, local.where, local.prefix, local.headers) == (
        "unix", "/run/slurmrestd.sock", "", {})
    remote = client_for(Row("https://slurm.lab:6820/api", "hg", "secret-jwt"))
    assert (remote.scheme, remote.where, remote.prefix) == ("https", "slurm.lab:6820", "/api")
    assert remote.headers == {"X-SLURM-USER-NAME": "hg", "X-SLURM-USER-TOKEN": "secret-jwt"}
    assert "secret-jwt" not in repr(remote)
    for bad in ("slurm.lab:6820", "ftp://slurm.lab", "unix://"):
        with pytest.raises(SlurmError, match="must be unix:///path"):
            SlurmClient(bad)


def test_a_socket_nobody_listens_on(tmp_path):
    client = SlurmClient(f"unix://{tmp_path / 'none.sock'}", timeout=2)
    with pytest.raises(SlurmError, match=r"is not answering: No such file or directory\.$"):
        client.ping()


def test_a_closed_port():
    with socket.socket() as s:  # a port nothing listens on once this is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = SlurmClient(f"http://127.0.0.1:{port}", "hg", "secret-jwt", timeout=2)
    with pytest.raises(SlurmError) as caught:
        client.nodes()
    assert str(caught.value) == (f"slurmrestd at 127.0.0.1:{port} is not answering: "
                                 "Connection refused.")
