"""A real two-node Slurm cluster on this host for the tests (Debian's slurm-wlm 22.05).

``start_cluster(root)`` runs, all under ``root`` and as root: a munged of its own (own key
and socket), slurmctld on a free port, two slurmd (``-N node1``, ``-N node2``, each with
three fake ``tpu:bm1684x`` chips, real device nodes from ``tests.fake_hosts.mknod``) and
slurmrestd on the unix socket ``root/slurmrestd.sock``. No cgroup plugin, no slurmdbd:
processes are tracked through /proc (proctrack/linuxproc), so nothing touches the host's
cgroups or Podman's. Every daemon logs to a file under ``root``; one that does not start
raises with its log's tail. ``stop()`` also kills what slurmd leaves running (slurmstepd and
the jobs' processes).
"""

import http.client
import json
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fake_hosts import mknod

NODES = ("node1", "node2")
CHIPS = 3  # tpu:bm1684x per node
NODE_CPUS = 2
NODE_MEMORY_MB = 1024
PARTITION = "tpu"
API = "/slurm/v0.0.38"
KILL_WAIT = 10  # seconds between SIGTERM and SIGKILL of a job's processes
EPILOG = Path(__file__).resolve().parents[1] / "scheduler" / "slurm_epilog.sh"
PROGRAMS = ("munged", "slurmctld", "slurmd", "slurmrestd", "sbatch", "scontrol", "sinfo")


def missing_programs():
    """The programs the cluster needs that are not installed (``make test-packages``)."""
    path = f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin"
    return [name for name in PROGRAMS if shutil.which(name, path=path) is None]


def skip_unless_installed():
    """Skip the test, naming what is missing, when Slurm is not installed."""
    missing = missing_programs()
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): "
                    "make test-packages installs it")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (slurmrestd's ``unix:`` listener)."""

    def __init__(self, path, timeout=10):
        super().__init__("localhost", timeout=timeout)
        self.path = str(path)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def slurm_conf(root, ctld_port, node_ports, epilog):
    """The text of slurm.conf for the cluster under ``root``."""
    lines = [
        "ClusterName=hourglass",
        "SlurmctldHost=localhost",
        f"SlurmctldPort={ctld_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge/munge.sock'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool/%n'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd-%n.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd-%n.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        "MailProg=/bin/true",
        # The configured CPUs and memory count, not this host's (both nodes are this host).
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=100",  # without it, a job without --mem holds its node's whole memory
        "SchedulerType=sched/backfill",
        # Only backfill schedules heterogeneous jobs: every second, not every 30.
        "SchedulerParameters=batch_sched_delay=0,bf_interval=1",
        f"KillWait={KILL_WAIT}",
        "GresTypes=tpu",
        # Job ids of their own: test sessions share Podman, and an Epilog stops the
        # containers labelled with its job's id, whoever's cluster that id came from.
        f"FirstJobId={random.randrange(1000, 10**7)}",  # MaxJobId is 67043328
    ]
    if epilog:
        lines.append(f"Epilog={epilog}")
    for name, port in zip(NODES, node_ports, strict=True):
        lines.append(f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
                     f"CPUs={NODE_CPUS} RealMemory={NODE_MEMORY_MB} "
                     f"Gres=tpu:bm1684x:{CHIPS} State=UNKNOWN")
    lines.append(f"PartitionName={PARTITION} Nodes={','.join(NODES)} Default=YES State=UP "
                 "MaxTime=INFINITE")
    return "\n".join(lines) + "\n"


def gres_conf(root):
    """gres.conf: each node's chips are ``root/<node>/dev/bm-sophon[0-2]``, in index order."""
    return "".join(f"NodeName={name} Name=tpu Type=bm1684x "
                   f"File={root / name / 'dev'}/bm-sophon[0-{CHIPS - 1}]\n" for name in NODES)


@dataclass
class Cluster:
    """A started cluster: ``rest`` (slurmrestd's socket), ``env`` (what every Slurm command
    needs: SLURM_CONF), the chips of each node (``devices``), the daemons."""

    root: Path
    env: dict
    devices: dict = field(default_factory=dict)
    processes: list = field(default_factory=list)

    @property
    def rest(self):
        return self.root / "slurmrestd.sock"

    def run(self, *argv, check=True):
        """Run a Slurm command (sbatch, scontrol, squeue...) against this cluster."""
        result = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                timeout=30)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return result

    def request(self, method, path, body=None):
        """``(status, JSON answer)`` of slurmrestd for ``method`` on ``API + path``."""
        connection = _UnixConnection(self.rest)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, API + path,
                               body=None if body is None else json.dumps(body), headers=headers)
            answer = connection.getresponse()
            text = answer.read()
        finally:
            connection.close()
        return answer.status, (json.loads(text) if text else None)

    def log(self, name):
        """The log of daemon ``name`` (munged, slurmctld, slurmd-node1, slurmrestd...): its log
        file, else what it wrote to its output."""
        for path in (self.root / f"{name}.log", self.root / f"{name}.out"):
            if path.exists():
                return path.read_text(errors="replace")
        return ""

    def stop(self):
        """Stop every daemon it started (SIGTERM, then SIGKILL) and wait for each; then kill
        what the jobs left (slurmstepd and the jobs' processes outlive slurmd)."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self.processes.clear()
        self._kill_leftovers()

    def _kill_leftovers(self):
        """SIGKILL every process whose environment names this cluster's SLURM_CONF (slurmd
        passes it to slurmstepd and the jobs), until none is left."""
        mark = f"\0SLURM_CONF={self.env['SLURM_CONF']}\0".encode()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = []
            for folder in Path("/proc").glob("[0-9]*"):
                pid = int(folder.name)
                try:
                    environ = b"\0" + (folder / "environ").read_bytes()
                except OSError:  # gone, or a zombie
                    continue
                if pid != os.getpid() and mark in environ:
                    found.append(pid)
            if not found:
                return
            for pid in found:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"processes of the cluster under {self.root} survived SIGKILL")

    # --- starting --------------------------------------------------------------------

    def _spawn(self, name, argv, env=None):
        """Start daemon ``name`` in the foreground of a process of its own."""
        with open(self.root / f"{name}.out", "ab") as out:
            process = subprocess.Popen(argv, env=env or self.env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        process.name = name
        self.processes.append(process)
        return process

    def _wait(self, ready, what, timeout=30):
        """Poll ``ready`` until true; raise with the daemons' log tails (a dead one's first)
        if a daemon died or the time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [p for p in self.processes if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0].name} exited ({dead[0].returncode}) while "
                                   f"waiting for {what}:\n{self._tails(dead[0])}")
            if ready():
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}:\n{self._tails()}")

    def _tails(self, first=None, lines=20):
        """The last lines of each daemon's log (its output, where it wrote no log)."""
        tails = []
        for process in sorted(self.processes, key=lambda p: p is not first):
            text = self.log(process.name)
            tails.append(f"--- {process.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(tails)

    def settle(self, timeout=60):
        """Cancel every job still pending or running and wait until both nodes are idle with
        no flags (what each test leaves behind)."""
        for job in self.request("GET", "/jobs")[1]["jobs"]:
            if job["job_state"] in ("PENDING", "RUNNING"):
                self.request("DELETE", f"/job/{job['job_id']}")
        deadline = time.monotonic() + timeout
        while not self.all_idle():
            if time.monotonic() > deadline:
                raise AssertionError(f"the nodes were not idle again within {timeout} s")
            time.sleep(0.1)

    def all_idle(self):
        """Both nodes idle, with no flags, as slurmrestd says."""
        nodes = self.request("GET", "/nodes")[1]["nodes"]
        return all(node["state"] == "idle" and not node["state_flags"] for node in nodes)

    def _nodes_idle(self):
        result = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
        return all(states.get(name) == "idle" for name in NODES)

    def _rest_answers(self):
        try:
            status, answer = self.request("GET", "/ping")
        except OSError:
            return False
        return status == 200 and answer["pings"][0]["ping"] == "UP"


def _start_munge(cluster):
    folder = cluster.root / "munge"
    folder.mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    cluster._spawn("munged", [
        "munged", "--foreground", "--force", "-S", str(folder / "munge.sock"),
        "--key-file", str(key), "--pid-file", str(folder / "munged.pid"),
        "--seed-file", str(folder / "seed"),  # in the foreground it logs to its output
        "--num-threads", "4"])
    cluster._wait((folder / "munge.sock").exists, "munged's socket")


def start_cluster(root: Path, epilog: Path | None = None) -> Cluster:
    """Start the cluster under ``root`` (a folder with none of its files yet); ``epilog``, a
    script slurmd runs as root on each node of a job (or of a heterogeneous job's component)
    when it ends. Its nodes are idle and slurmrestd answers when it returns; ``stop()`` it
    in the end."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "state").mkdir()
    devices = {}
    for name in NODES:
        (root / "spool" / name).mkdir(parents=True)
        devices[name] = [mknod(root / name / "dev" / f"bm-sophon{n}") for n in range(CHIPS)]
    ctld_port, *node_ports = _distinct_ports(1 + len(NODES))
    (root / "slurm.conf").write_text(slurm_conf(root, ctld_port, node_ports, epilog))
    (root / "gres.conf").write_text(gres_conf(root))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_CONF": str(root / "slurm.conf")}
    cluster = Cluster(root=root, env=env, devices=devices)
    try:
        _start_munge(cluster)
        cluster._spawn("slurmctld", ["slurmctld", "-D", "-i"])
        cluster._wait(lambda: cluster.run("scontrol", "ping", check=False).returncode == 0,
                      "slurmctld")
        for name in NODES:
            cluster._spawn(f"slurmd-{name}", ["slurmd", "-D", "-N", name])
        cluster._wait(cluster._nodes_idle, "both nodes idle")
        cluster._spawn("slurmrestd", [
            "slurmrestd", "-a", "rest_auth/local", "-s", "openapi/v0.0.38",
            f"unix:{cluster.rest}"], env={**env, "SLURMRESTD_SECURITY": "disable_user_check"})
        cluster._wait(cluster._rest_answers, "slurmrestd")
    except BaseException:
        cluster.stop()
        raise
    return cluster


def start_podman_cluster(root: Path, podman_url: str) -> Cluster:
    """``start_cluster`` with Hourglass's own Epilog (scheduler/slurm_epilog.sh) on the Podman
    service at ``podman_url``, as a lab installs it; what the script writes to stderr goes
    to ``root / "epilog.err"``."""
    root.mkdir(parents=True, exist_ok=True)
    wrapper = root / "epilog"
    wrapper.write_text("#!/bin/sh\n"
                       f"HOURGLASS_EPILOG_PODMAN_URL={shlex.quote(podman_url)}\n"
                       "export HOURGLASS_EPILOG_PODMAN_URL\n"
                       f"exec {shlex.quote(str(EPILOG))} 2>> "
                       f"{shlex.quote(str(root / 'epilog.err'))}\n")
    wrapper.chmod(0o755)
    return start_cluster(root, epilog=wrapper)


def _distinct_ports(count):
    ports = set()
    while len(ports) < count:
        ports.add(free_port())
    return list(ports)



def hourglass_lab(cluster: Cluster, podman_url: str, spec: str, cpu: str, memory_gb: str,
                  chips: int):
    """Hourglass set up on ``cluster``, inside an app context on a migrated database whose
    local node discovery has found: Slurm cluster "lab" (its nodes on the Podman service at
    ``podman_url``), pool "tpu" mapped to the partition with both nodes found Ready (3 chips
    each), resource "TPU 1684X", spec ``spec`` (``cpu``, ``memory_gb``, ``chips`` chips) and
    a funded renter rene of group "lab", bound to the pool; (the SlurmCluster row, rene)."""
    from portal.models import Group, Membership, PoolGroup, SlurmCluster
    from portal.pools import create_pool, set_pool_slurm
    from portal.specs import create_resource, parse_spec, save_spec
    from portal.users import create_user
    from scheduler.slurm_discovery import discover_cluster
    from tests.conftest import PASSWORD
    from tests.support import fund

    slurm = SlurmCluster.create(name="lab", rest_url=f"unix://{cluster.rest}",
                                podman_url=podman_url, host_root=f"{cluster.root}/{{node}}")
    pool = create_pool("tpu")
    set_pool_slurm(pool, slurm, PARTITION, offered=[PARTITION])
    found = discover_cluster(slurm)
    assert set(found.values()) == {""} and len(found) == len(NODES), found
    tpu = create_resource("TPU 1684X", "sophgo.com/bm1684x")
    save_spec(None, parse_spec(spec, cpu, memory_gb, "3.6", {tpu: str(chips)}))
    renter = fund(create_user("rene", "renter", PASSWORD))
    group = Group.create(name="lab")
    Membership.create(user=renter, group=group)
    PoolGroup.create(pool=pool, group=group)
    return slurm, renter
