"""Schemathesis over every operation of ``/api/v1/openapi.json``, as a renter and as a miner.

The real server (``flask --app app serve``: gunicorn with the scheduler on, as ``make run``
starts it) on a seeded database: a custom resource, a spec, a pool bound to a group, nodes,
a running and an ended task, a notebook, ledger records. Schemathesis's ``st`` command runs
every phase (examples, coverage, fuzzing, stateful) with every check (``--checks all``),
once with the renter's API token and once with the miner's (a role gets 403 on the other
role's operations, which the checks accept); ``tests/schemathesis.toml`` holds the seed and
the examples per operation. Any failure fails the test, whose message is what ``st``
printed: the operation, the check, a ``curl`` line that reproduces it.

Why ``st`` in a subprocess rather than ``schemathesis.pytest``: a run is the command a
person types to reproduce it (the message says which), Hypothesis's state and settings
stay out of this pytest process, and a run is one process with one exit status and report.

Nothing leaves the machine. Adding a node (``POST /nodes``) stores its URL and asks the
scheduler for a discovery at once; discovery, and the scheduler's sweep, connect to what the
URL names: ``tcp://`` over HTTP, ``ssh://`` through an ``ssh`` process, ``unix://`` a local
socket (a file here, never another machine). Switching the scheduler off would keep them
from trying, but the scheduler is half of what the API drives (placing and running tasks,
ending them, noticing nodes), so the server runs with it, in a network namespace of its own
(``tests/netns.py``) where loopback is the only interface: any other address is "Network is
unreachable" and no name resolves, as the seeded nodes ``far-tcp`` and ``far-ssh`` show
before the run. Podman answers on its unix socket, so replicas still run; ``st`` runs in
the same namespace. The JupyterLab image build (``POST /images/jupyter/build``) downloads
packages and rebuilds the image other tests share, so it goes through the documented test
builder (``HOURGLASS_IMAGE_BUILDER``), as the Images page's browser tests do; notebooks use
the test busybox image (their runs fail at once instead of starting JupyterLab on a 2-core
machine), and the default pool runs at most two of the renter's replicas at once.

``tests/schemathesis_hooks.py`` makes Schemathesis's transport work over urllib3-future
(which this project's dependencies install in urllib3's place) and renews the run's token
when the run revokes it (``DELETE /tokens/{id}`` with the id ``GET /tokens`` showed).
"""

import json
import os
import shlex
import sqlite3
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from scheduler.podman_service import podman_env
from tests import netns
from tests.conftest import PASSWORD, ROOT
from tests.support import fund_on, wait_for

pytestmark = pytest.mark.podman

ST = Path(sys.executable).with_name("st")
CONFIG = str(ROOT / "tests" / "schemathesis.toml")  # seed, examples per operation...
HOOKS = str(ROOT / "tests" / "schemathesis_hooks.py")  # urllib3-future; the token renewed
NETNS = str(Path(netns.__file__))  # run as a script: the processes need not import tests
RUN_TIMEOUT = 240  # seconds for one role's run
ACCOUNTS = {"renter": "rene", "miner": "mina"}
# Refused tokens count against the address (LOGIN_RATE_LIMIT, 10 a minute): past it every
# request with a token is 429, the run's own too. The checks send refused tokens on purpose
# (ignored_auth) and expect 401, so the limit is set out of their reach here.
NO_RATE_LIMIT = "1000000 per minute"
FAR_NODES = {"far-tcp": "tcp://192.0.2.10:8080",  # TEST-NET-1: not a real host anywhere
             "far-ssh": "ssh://root@example.com/run/podman/podman.sock"}
REFUSALS = ("Network is unreachable", "Could not resolve hostname")  # how the namespace says no


class IsolatedServer:
    """A ``LiveServer`` (from ``live_server_factory``) started in a network namespace of its
    own; ``call`` runs a function in a thread that is in that namespace too."""

    def __init__(self, server):
        self.server = server
        self.url = server.url
        self.inside = None

    def start(self):
        server = self.server
        with open(server.log_path, "ab") as log:
            server.process = subprocess.Popen(
                [sys.executable, NETNS, "new", "--",
                 sys.executable, "-m", "flask", "--app", "app", "serve"],
                env=server.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        pid = server.process.pid
        ours = os.readlink("/proc/self/ns/net")
        wait_for(lambda: os.readlink(f"/proc/{pid}/ns/net") != ours, timeout=10,
                 what="the server's own network namespace")
        self.inside = ThreadPoolExecutor(1, initializer=netns.enter, initargs=(pid,))
        self.call(wait_for, self._answers, timeout=60, what=f"the live server on {self.url}")
        return self

    def _answers(self):
        if self.server.process.poll() is not None:
            raise AssertionError(f"server exited:\n{self.server.log()}")
        try:
            return requests.get(f"{self.url}/healthz", timeout=5).status_code in (200, 503)
        except (requests.ConnectionError, requests.Timeout):
            return False

    def call(self, function, *args, **kwargs):
        return self.inside.submit(function, *args, **kwargs).result()

    def api(self, token, method, path, body=None, ok=True):
        return self.call(_api, self.url, token, method, path, body, ok)

    def run_inside(self, argv, **kwargs):
        """``argv`` as a process in the server's network namespace."""
        return subprocess.run([sys.executable, NETNS, "enter",
                               str(self.server.process.pid), "--", *argv], **kwargs)

    def close(self):
        if self.inside is not None:
            self.inside.shutdown()


def _api(url, token, method, path, body, ok):
    answer = requests.request(method, f"{url}/api/v1{path}", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {token}"})
    if ok:
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
    return answer.json() if answer.content else None


def _tokens(server):
    """{role: an API token of that role's account}, made as ``make run``'s users make them."""
    return {role: server.flask("token", "create", name, "--name", "contract").stdout.strip()
            for role, name in ACCOUNTS.items()}


def _seed(live, tokens, image):
    """One of each object the operations take an id or a name of."""
    miner, renter = tokens["miner"], tokens["renter"]

    def nodes():
        return {node["name"]: node for node in live.api(miner, "GET", "/nodes")}

    wait_for(lambda: any(node["ready"] for node in nodes().values()), timeout=60,
             what="the local node to be Ready")
    for name, url in FAR_NODES.items():
        live.api(miner, "POST", "/nodes", {"name": name, "url": url})
    live.api(miner, "POST", "/resources", {"name": "TPU 1684X", "kind": "sophgo.com/bm1684x",
                                           "description": "Sophgo BM1684X"})
    live.api(miner, "POST", "/specs", {"name": "small", "cpu": "0.1", "memory_gb": "0.125",
                                       "price": "1"})
    pools = {pool["name"]: pool for pool in live.api(miner, "GET", "/pools")}
    default = next(pool for pool in pools.values() if pool["is_default"])
    # At most two replicas of a renter start or run at once: fuzzed tasks stay cheap.
    live.api(miner, "PATCH", f"/pools/{default['id']}",
             {"limits": {"max_replicas_per_user": 2}})
    live.api(miner, "POST", "/pools", {"name": "lab", "description": "The lab's own",
                                       "groups": ["lab-users"]})
    rene = next(r for r in live.api(miner, "GET", "/billing/renters") if r["name"] == "rene")
    assert rene["id"] == 2  # tests/schemathesis.toml names it
    live.api(miner, "POST", f"/billing/renters/{rene['id']}/recharge",
             {"amount": "5", "note": "seed"})

    def task(name, argv):
        return live.api(renter, "POST", "/tasks", {
            "name": name, "image": image, "argv": argv, "pool": default["name"],
            "subtasks": [{"role": "main", "spec": "small", "replicas": 1}]})["id"]

    ended, running = task("done", ["echo", "done"]), task("sleeper", ["sleep", "3600"])
    live.api(renter, "POST", "/notebooks", {"name": "notes", "image": image, "spec": "small",
                                            "pool": default["name"], "start": False})

    def state(task_id):
        return live.api(renter, "GET", f"/tasks/{task_id}")["state"]

    wait_for(lambda: state(ended) == "succeeded" and state(running) == "running", timeout=60,
             interval=0.2, what="the seeded tasks to end and to run")
    # Discovery tries a node as soon as it is added, and the namespace refuses it.
    far = wait_for(lambda: (found := nodes()) and all(
        "not answering" in found[name]["reason"] for name in FAR_NODES) and found,
        timeout=30, what="discovery to try the far nodes")
    for name in FAR_NODES:
        assert far[name]["last_seen_at"] is None, far[name]
        assert any(refusal in far[name]["reason"] for refusal in REFUSALS), far[name]


def st_argv(url):
    """The ``st run`` command line, but for the credentials."""
    # Every path of the document, named: Schemathesis leaves out the operation that served
    # the document (GET /api/v1/openapi.json) unless a filter selects it.
    return [str(ST), "--config-file", CONFIG, "run", f"{url}/api/v1/openapi.json",
            "--checks", "all", "--include-path-regex", "^/api/v1/"]


@dataclass
class Outcome:
    role: str
    status: int
    output: str
    report: dict

    def summary(self):
        cases, operations = self.report["test_cases"], self.report["operations"]
        return (f"as the {self.role}: exit status {self.status}, "
                f"{operations['tested']}/{operations['total']} operations, "
                f"{cases['generated']} test cases, {cases['with_failures']} failing, "
                f"{self.report['running_time']:.0f} s, "
                f"tokens renewed {self.report['auth']['reauth_count']} times")


def _fuzz(live, role, token, folder):
    """One ``st run`` as ``role`` (its first API token ``token``), in ``folder``."""
    argv = [*st_argv(live.url), "--no-color", "--report", "json",
            "--report-json-path", str(folder / "report.json")]
    env = {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS, "HOURGLASS_CONTRACT_URL": live.url,
           "HOURGLASS_CONTRACT_ROLE": role, "HOURGLASS_CONTRACT_USER": ACCOUNTS[role],
           "HOURGLASS_CONTRACT_PASSWORD": PASSWORD, "HOURGLASS_CONTRACT_TOKEN": token}
    # In the server's namespace, and in a folder of its own (st writes .hypothesis there).
    try:
        done = live.run_inside(argv, cwd=folder, env=env, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired as late:
        printed = [text.decode(errors="replace") if isinstance(text, bytes) else text or ""
                   for text in (late.stdout, late.stderr)]
        pytest.fail(f"st run as the {role} ran past {RUN_TIMEOUT} s:\n{''.join(printed)}")
    output = done.stdout + done.stderr
    path = folder / "report.json"
    assert path.exists(), f"st run as the {role} wrote no report:\n{output}"
    return Outcome(role, done.returncode, output, json.loads(path.read_text()))


def _not_for(document, role):
    """Operations ("GET /api/v1/nodes") that answer ``role``'s API token 403: another role's,
    and those for signed-in sessions only."""
    return {f"{method.upper()} {path}" for path, item in document["paths"].items()
            for method, op in item.items()
            if op.get("x-hourglass-role", "any") not in ("any", role)
            or op["security"] == [{"cookie": []}]}


def _remove_leftovers(podman_service, instance):
    """The containers and task networks of the server with this instance id."""
    env = podman_env(podman_service.conf)
    for kind in ("container", "network"):
        found = subprocess.run(["podman", kind, "ls", "-aq" if kind == "container" else "-q",
                                "--filter", f"label=hourglass.instance={instance}"],
                               env=env, capture_output=True, text=True).stdout.split()
        if found:
            remove = ["rm", "-f", "-t", "0"] if kind == "container" else ["rm", "-f"]
            subprocess.run(["podman", kind, *remove, *found], env=env, capture_output=True)


@pytest.fixture
def live(live_server_factory, podman_service, test_image, tmp_path):
    host = tmp_path / "host"  # no accelerators on the local node
    host.mkdir()
    server = live_server_factory(
        HOURGLASS_HOST_ROOT=str(host), HOURGLASS_TICK_SECONDS="1",
        HOURGLASS_IMAGE_BUILDER="tests.image_builders:quick_build",
        HOURGLASS_JUPYTER_IMAGE=test_image, HOURGLASS_LOGIN_RATE_LIMIT=NO_RATE_LIMIT)
    server.flask("db", "upgrade")
    server.flask("user", "add", "mina", "--role", "miner", "--password-stdin", stdin=PASSWORD)
    server.flask("user", "add", "rene", "--role", "renter", "--group", "lab-users",
                 "--password-stdin", stdin=PASSWORD)
    fund_on(server, "rene")
    live = IsolatedServer(server)
    try:
        yield live
    finally:
        live.close()
        server.stop()
        database = Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db"
        with closing(sqlite3.connect(database)) as db:
            row = db.execute("SELECT value FROM settings WHERE key = 'instance_id'").fetchone()
        if row:
            _remove_leftovers(podman_service, row[0])


def test_schemathesis_finds_no_failure_as_renter_or_miner(live, test_image, tmp_path):
    tokens = _tokens(live.server)
    live.start()
    _seed(live, tokens, test_image)
    document = live.api(tokens["miner"], "GET", "/openapi.json")
    outcomes = []
    # The renter first: the miner's run deletes and changes what the renter's relies on.
    for role in ("renter", "miner"):
        folder = tmp_path / f"st-{role}"
        folder.mkdir()
        outcomes.append(_fuzz(live, role, tokens[role], folder))
        print(f"--- st run {outcomes[-1].summary()}\n{outcomes[-1].output}")
    for outcome in outcomes:
        operations = outcome.report["operations"]
        assert outcome.report["complete"] and operations["tested"] == operations["total"] \
            == sum(len(item) for item in document["paths"].values()), outcome.output
        # Only what the role may not use was refused every time (the token stayed valid).
        refused = set(outcome.report["warnings"]["missing_auth"])
        assert refused <= _not_for(document, outcome.role), outcome.output
    failed = [outcome for outcome in outcomes if outcome.status != 0]
    assert not failed, "\n\n".join(
        f"Schemathesis failed {outcome.summary()}. Reproduce against a server with:\n"
        f"  SCHEMATHESIS_HOOKS=tests/schemathesis_hooks.py "
        f"{shlex.join(st_argv('URL')).replace(str(ROOT) + '/', '')} "
        f"-H 'Authorization: Bearer <{outcome.role} token>'\n\n{outcome.output}"
        for outcome in failed)
