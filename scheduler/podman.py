"""The Podman container backend, through podman-py.

The only module that talks to Podman; the rest of Hourglass speaks of nodes
and replicas. Node discovery uses ``host_info`` (what a node is),
``run_probe`` (a throwaway container that reads the node's host paths) and
``list_connections`` (this user's ``podman system connection`` entries).
Later issues add start/stop/inspect here.
"""

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from podman import PodmanClient
from podman.errors import APIError

PROBE_LABEL = "hourglass.probe"


@dataclass(frozen=True)
class HostInfo:
    """What a node's Podman says about its host. ``memory_bytes`` is the host's total memory."""

    hostname: str
    os_name: str
    kernel: str
    podman_version: str
    cpus: int
    memory_bytes: int
    images: tuple[str, ...] = ()  # tagged image names on the node, sorted


@dataclass(frozen=True)
class Connection:
    """One ``podman system connection`` entry: its name, URI and SSH identity file ("" if none)."""

    name: str
    url: str
    identity: str = ""


class ProbeImageMissing(Exception):
    """The node has no copy of the probe image (nothing is ever pulled)."""


class ProbeFailed(Exception):
    """The probe container ran but its script failed; the message holds its exit status."""


class PodmanBackend:
    """One Podman endpoint, reached at ``url`` (``unix:///path.sock``, ``tcp://``, ``ssh://``).

    ``timeout`` bounds each API call, in seconds; ``identity`` is the SSH key
    file for an ``ssh://`` URL (None: ssh's own defaults).
    """

    def __init__(self, url, timeout=5, identity=None):
        self.url = url
        self.timeout = timeout
        self.identity = identity

    def client(self):
        """A new podman-py client; use it as a context manager."""
        extra = {"identity": self.identity} if self.identity else {}
        return PodmanClient(base_url=self.url, timeout=self.timeout, **extra)

    def version(self):
        """The service's Podman version string; raises when it does not answer."""
        with self.client() as client:
            return client.version()["Version"]

    def host_info(self) -> HostInfo:
        """The node's host and its tagged images; raises when the service does not answer."""
        with self.client() as client:
            info = client.info()
            images = sorted({tag for image in client.images.list() for tag in image.tags})
        host = info.get("host", {})
        dist = host.get("distribution") or {}
        os_name = " ".join(str(dist.get(k, "")) for k in ("distribution", "version")).strip()
        if os_name and dist.get("codename"):
            os_name += f" ({dist['codename']})"
        return HostInfo(
            hostname=host.get("hostname", ""),
            os_name=(os_name[:1].upper() + os_name[1:]) or host.get("os", ""),
            kernel=host.get("kernel", ""),
            podman_version=(info.get("version") or {}).get("Version", ""),
            cpus=int(host.get("cpus") or 0),
            memory_bytes=int(host.get("memTotal") or 0),
            images=tuple(images),
        )

    def run_probe(self, image: str, script: str, mounts: Sequence[tuple[str, str]]) -> str:
        """Run ``script`` with ``/bin/sh -c`` in a throwaway container of ``image``; its stdout.

        ``mounts`` are (host path, container path) pairs, bound read-only; one
        whose host path the node lacks is left out (Podman names such a path
        in its error, one at a time), so the probe works on any host. No
        network, every capability dropped, no-new-privileges, a read-only root
        and few processes; the container is removed whatever happens. Raises
        ProbeImageMissing, ProbeFailed (non-zero exit), or podman-py's errors.
        """
        with self.client() as client:
            if not client.images.exists(image):
                raise ProbeImageMissing(image)
            container = self._create_probe(client, image, script, list(mounts))
            try:
                container.start()
                status = container.wait()
                out = b"".join(container.logs(stdout=True, stderr=False))
                if status != 0:
                    err = b"".join(container.logs(stdout=False, stderr=True))
                    last = err.decode(errors="replace").strip().splitlines()[-1:]
                    raise ProbeFailed(f"probe exited with {status}: {' '.join(last)}".strip())
                return out.decode(errors="replace")
            finally:
                container.remove(force=True)

    @staticmethod
    def _create_probe(client, image, script, mounts):
        while True:
            try:
                return client.containers.create(
                    image, entrypoint=["/bin/sh", "-c"], command=[script],
                    mounts=[{"type": "bind", "source": host, "target": inside, "read_only": True}
                            for host, inside in mounts],
                    network_mode="none", cap_drop=["ALL"], security_opt=["no-new-privileges"],
                    read_only=True, pids_limit=64, labels={PROBE_LABEL: "1"})
            except APIError as error:
                absent = [m for m in mounts if f"{m[0]}: no such file or directory" in str(error)]
                if not absent:
                    raise
                mounts.remove(absent[0])


def list_connections(timeout=10) -> list[Connection]:
    """This user's ``podman system connection list`` (the ``podman`` command, no shell).

    Raises OSError when podman is not installed, CalledProcessError or
    TimeoutExpired when it fails, ValueError when its output is not JSON.
    """
    result = subprocess.run(["podman", "system", "connection", "list", "--format", "json"],
                            capture_output=True, text=True, check=True, timeout=timeout)
    entries = json.loads(result.stdout or "[]") or []
    return [Connection(str(e["Name"]), str(e["URI"]), str(e.get("Identity") or ""))
            for e in entries]
