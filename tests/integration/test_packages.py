"""A fresh machine has only the base image: every program Hourglass or its tests run must come
from a Debian package that ``make`` installs, directly or through Depends.

Not through a Recommends (the Makefile installs with --no-install-recommends) and not from
a package someone once installed by hand: catatonit, netavark and aardvark-dns were only
on the developers' machines, so every container failed on a new one while CI stayed green.
The closure is computed from this machine's dpkg database: the Makefile's packages and
the Essential ones (every Debian base image has those), then their Depends and
Pre-Depends, an alternative taken as apt would (one already chosen, else the first one
installed), virtual packages through Provides.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scheduler.images import BUSYBOX
from scheduler.podman_service import podman_env, write_containers_conf
from tests.conftest import CHROMIUM, ROOT
from tests.integration.conftest import newest_server_bin

pytestmark = pytest.mark.podman

HELPER_DIRS = ("/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman",
               "/usr/lib/podman")  # Podman's default helper_binaries_dir
DEFAULT_INIT = "/usr/libexec/podman/catatonit"
SSHD = "/usr/sbin/sshd"  # what tests/integration/test_ssh_node.py runs


def make_packages():
    out = subprocess.run(["make", "-s", "--no-print-directory", "packages"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def installed():
    """{package: (essential, provides, [dependency groups])} of installed packages; a group
    is a list of alternative names."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f",
         "${Package}\t${db:Status-Abbrev}\t${Essential}\t${Provides}\t${Pre-Depends}, "
         "${Depends}\n"], capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        name, status, essential, provides, depends = line.split("\t")
        if not status.startswith("ii"):
            continue
        groups = [[_name(alt) for alt in group.split("|")]
                  for group in depends.split(",") if group.strip()]
        found[name] = (essential == "yes", [_name(p) for p in provides.split(",") if p.strip()],
                       groups)
    return found


def _name(text):
    """``python3:any (>= 3.11)`` -> ``python3``."""
    return re.split(r"[\s(:]", text.strip(), maxsplit=1)[0]


def closure(roots, packages):
    providers = {}
    for name, (_, provides, _) in packages.items():
        for virtual in provides:
            providers.setdefault(virtual, []).append(name)
    chosen = set()
    queue = [r for r in roots if r in packages]
    while queue:
        name = queue.pop()
        if name in chosen:
            continue
        chosen.add(name)
        for group in packages[name][2]:
            real = [c for alt in group for c in ([alt] if alt in packages else [])
                    + providers.get(alt, [])]
            pick = next((c for c in real if c in chosen or c in roots), real[0] if real else None)
            if pick is not None:
                queue.append(pick)
    return chosen


def owner(path):
    """The package that installed ``path`` (as given, or the file its links lead to; with
    merged /usr, a package may have installed it as /bin/... or /sbin/...)."""
    paths = [str(path), str(Path(path).resolve())]
    paths += [p.removeprefix("/usr") for p in paths if re.match(r"/usr/s?bin/", p)]
    for candidate in dict.fromkeys(paths):
        result = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True,
                                text=True)
        if result.returncode == 0:
            return result.stdout.split(":")[0].split(",")[0].strip()
    return None


def init_path(conf):
    """The init binary Podman is configured with: ours, else the distribution's default."""
    for text in (conf.read_text(), Path("/usr/share/containers/containers.conf").read_text()):
        match = re.search(r'^#?\s*init_path\s*=\s*"([^"]+)"', text, re.MULTILINE)
        if match:
            return match.group(1)
    return DEFAULT_INIT


def helper(name):
    return next((f"{d}/{name}" for d in HELPER_DIRS if Path(d, name).exists()),
                f"{HELPER_DIRS[-1]}/{name}")


def programs(tmp_path):
    """{path: why} of every program Hourglass or its tests run."""
    conf = write_containers_conf(tmp_path / "containers.conf")
    info = json.loads(subprocess.run(["podman", "info", "--format", "json"],
                                     env=podman_env(conf), capture_output=True, text=True,
                                     check=True).stdout)["host"]
    assert info["networkBackend"] == "netavark", "task networks need netavark for names"
    pg = newest_server_bin()
    return {
        shutil.which("podman") or "podman": "Podman itself",
        info["ociRuntime"]["path"]: "the OCI runtime containers.conf names",
        info["conmon"]["path"]: "conmon, each container's monitor",
        init_path(conf): "the init binary every replica runs as PID 1",
        helper("netavark"): "netavark, the network backend",
        helper("aardvark-dns"): "aardvark-dns, names on task networks",
        shutil.which("iptables") or "iptables": "netavark's firewall",
        BUSYBOX: "the probe and test images",
        shutil.which("mmdebstrap") or "mmdebstrap": "the JupyterLab image's base",
        shutil.which("ssh") or "ssh": "ssh:// nodes' tunnels",
        shutil.which("ssh-keygen") or "ssh-keygen": "the ssh node tests",
        SSHD: "the ssh node tests",
        CHROMIUM: "the browser tests",
        str(pg / "initdb") if pg else "initdb": "the PostgreSQL tests",
        shutil.which("runuser") or "runuser": "the PostgreSQL tests under root",
        shutil.which("prometheus") or "prometheus": "make monitoring",
        shutil.which("prometheus-node-exporter") or "prometheus-node-exporter":
            "make monitoring",
        shutil.which("promtool") or "promtool": "the monitoring config test",
        **{shutil.which(name) or name: "the tests' Slurm cluster"
           for name in ("munged", "slurmctld", "slurmd", "slurmstepd", "slurmrestd", "sbatch",
                        "scontrol", "sinfo")},
    }


def test_every_program_comes_from_a_package_make_installs(tmp_path):
    packages = installed()
    roots = make_packages() | {name for name, (essential, _, _) in packages.items()
                               if essential}
    reachable = closure(roots, packages)
    problems = []
    for path, why in programs(tmp_path).items():
        package = owner(path) if Path(path).exists() else None
        if package is None:
            problems.append(f"{path} ({why}): not installed by any package")
        elif package not in reachable:
            problems.append(f"{path} ({why}) comes from {package}, which make does not "
                            "install (add it to RUN_PACKAGES or TEST_PACKAGES)")
    assert not problems, "\n".join(problems)


def test_the_closure_follows_depends_not_recommends():
    packages = installed()
    reachable = closure({"podman"}, packages)
    assert {"podman", "conmon", "golang-github-containers-common"} <= reachable
    assert "catatonit" not in reachable  # only a Recommends of podman
