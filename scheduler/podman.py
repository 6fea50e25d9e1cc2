"""The Podman container backend: the adapter through which Hourglass talks to Podman.

``PodmanBackend`` implements the container backend seam (``scheduler.backend``) with
podman-py: replicas' containers, their events, logs and execs, and per-task networks.
It also answers what node discovery asks of a node (``host_info``, ``run_probe``, the
``canary``), what the sampling job asks (``host_usage``, ``usage``) and what image
imports need (``image_exists``, ``import_image``; the renter's images' calls are
``scheduler.podman_images``'s, which it inherits); the transport under every call
(clients, tunnels, gates, retries) is ``PodmanEndpoint``'s.
Two things reach Podman otherwise, each saying why where it does: a console's
terminal and a followed log, on connections of their own (``scheduler.podman_streams``),
and image builds, with the ``podman`` command (``scheduler.jupyter_image``,
``scheduler.renter_images``).
``scheduler.podman_service`` starts the local service, and ``scheduler.connections``
reads the ``podman`` command's connection list: neither is an API call.

Every replica's container runs without privileges: all capabilities
dropped, no-new-privileges, and Podman's ``catatonit`` as PID 1 (``init``)
so a stop's SIGTERM reaches the renter's program even when it installs no
handler, and zombies are reaped. Per-task networks are bridges with
``dns_enabled``: with netavark and aardvark-dns (Debian's podman 4.3 here),
containers on one resolve each other's names and aliases. They are also
``isolate``d: no route between two such networks, so put every task on its
own (a container on Podman's default network can still reach them by IP).
``canary`` runs a throwaway container with exactly those options, so a node
missing catatonit or netavark is found out before a renter's task is.
"""

import codecs
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

import requests
from podman.api import stream_frames
from podman.errors import APIError, NotFound

from scheduler.backend import (
    INSTANCE_LABEL,
    NS,
    REPLICA_LABEL,
    BackendError,
    ContainerBackend,
    ContainerEvent,
    ContainerExists,
    ContainerSpec,
    ContainerState,
    ContainerUsage,
    ExecResult,
    StartFailed,
)
from scheduler.libpod import create_args, event_of, listed, state_of, usage_of
from scheduler.podman_errors import api_message, engine_errors, read_timed_out
from scheduler.podman_images import ImageStore

log = logging.getLogger(__name__)

PROBE_LABEL = "hourglass.probe"
CANARY_LABEL = "hourglass.canary"
CANARY_DEVICE = "/dev/null:/dev/hourglass-canary:rwm"


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
class HostUsage:
    """A node's memory in all and free, as its Podman's ``info`` says. Free is the kernel's
    MemFree, so the page cache counts as used: Podman (4.3 to 5) gives no MemAvailable,
    which the local node's ``proc/meminfo`` and node-exporter have."""

    memory_total_bytes: int
    memory_free_bytes: int


class ProbeImageMissing(Exception):
    """The node has no copy of the probe image (nothing is ever pulled)."""


class ProbeFailed(Exception):
    """The probe container ran but its script failed; the message holds its exit status."""


class PodmanBackend(ImageStore, ContainerBackend):
    """One node's Podman (see ``PodmanEndpoint`` for ``url``, ``timeout``, ``identity`` and
    ``tunnels``). A stop adds its grace to the timeout; a followed log has none."""

    def host_info(self) -> HostInfo:
        """The node's host and its tagged images; raises when the service does not answer."""
        with self.call() as client:
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

    def host_usage(self) -> HostUsage:
        """The node's memory now, in one call; raises when the service does not answer.
        (Podman's ``cpuUtilization`` is an average since the host booted, so it is not read.)"""
        with self.call() as client:
            host = client.info().get("host", {})
        return HostUsage(int(host.get("memTotal") or 0), int(host.get("memFree") or 0))

    def run_probe(self, image: str, script: str, mounts: Sequence[tuple[str, str]]) -> str:
        """Run ``script`` with ``/bin/sh -c`` in a throwaway container of ``image``; its stdout.

        ``mounts`` are (host path, container path) pairs, bound read-only; one
        whose host path the node lacks is left out (Podman names such a path
        in its error, one at a time), so the probe works on any host. No
        network, every capability dropped, no-new-privileges, a read-only root
        and few processes; the container is removed whatever happens. Raises
        ProbeImageMissing, ProbeFailed (non-zero exit), NodeUnreachable or BackendError.
        """
        with self.call() as client:
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

    def import_image(self, tarball, image: str, changes: Sequence[str] = ()) -> None:
        """Make ``image`` on the node from a root file system ``tarball`` (what ``podman
        import`` does, with Containerfile ``changes`` such as ``CMD ["/bin/sh"]``)."""
        with self.call(timeout=60) as client, open(tarball, "rb") as data:
            response = client.api.post("/images/import", data=data,
                                       params={"reference": image, "changes": list(changes)},
                                       headers={"Content-Type": "application/x-tar"})
            response.raise_for_status()

    def image_exists(self, image: str) -> bool:
        """Whether the node has ``image`` (nothing is ever pulled)."""
        def attempt():
            with self.call() as client:
                return client.images.exists(image)
        return self.retry(attempt)

    # --- the container backend seam (scheduler.backend) ---------------------------------

    def start(self, spec: ContainerSpec) -> str:
        self.retry(lambda: self._create(spec), sent_is_done=True)
        self.retry(lambda: self._start_created(spec.name), sent_is_done=True)
        return spec.name

    def _create(self, spec):
        with self.call(spec.name) as client:
            try:
                client.containers.create(spec.image, **create_args(spec))
            except APIError as error:
                if error.response is None:  # no answer: engine_errors says so
                    raise
                if client.containers.exists(spec.name):
                    raise ContainerExists(spec.name) from error
                raise StartFailed(api_message(error)) from error

    def _start_created(self, name):
        with self.call(name) as client:
            response = client.api.post(f"/containers/{quote(name, safe='')}/start")
            if response.status_code == 304:  # already started
                return
            try:
                response.raise_for_status()
            except APIError as error:
                try:
                    client.containers.remove(name, force=True)
                except APIError:  # the orphan sweep removes it later
                    log.info("removing %s after its failed start failed", name)
                raise StartFailed(api_message(error)) from error

    def stop(self, handle: str, grace: int) -> None:
        grace = max(0, math.ceil(grace))

        def attempt():
            with self.call(handle, gate="stop") as client:
                response = client.api.post(f"/containers/{quote(handle, safe='')}/stop",
                                           params={"timeout": grace},
                                           timeout=grace + self.timeout)
                if response.status_code != 404:  # 304: already stopped
                    response.raise_for_status()
        self.retry(attempt)

    def inspect(self, handle: str) -> ContainerState | None:
        def attempt():
            with self.call(handle) as client:
                try:
                    return state_of(client.containers.get(handle).attrs)
                except NotFound:
                    return None
        return self.retry(attempt)

    def list_ours(self, instance: str, running_only: bool = False) -> list[ContainerState]:
        # podman-py takes several values of one filter only as a list of "key=value" strings
        labels = [f"label={REPLICA_LABEL}", f"label={INSTANCE_LABEL}={instance}"]

        def attempt():
            with self.call() as client:
                return [listed(found.attrs) for found in
                        client.containers.list(all=not running_only, filters=labels)]
        return self.retry(attempt)

    def usage(self, handles: Sequence[str]) -> dict[str, ContainerUsage]:
        # Podman 4.3 answers no stats at all when one of the containers asked is gone
        # ({"Error": {}, "Stats": null}): then the running replicas' containers are listed
        # and those of them asked for are asked again, together. Should one go in between,
        # the node gives none this time (never one call per container: with many, the
        # node's calls would queue past the sampler's deadline). One that is not running
        # comes with zeros, its reading time too.
        if not handles:
            return {}
        with self.call() as client:
            stats = self._stats(client, handles)
            if stats is None:
                running = {listed(found.attrs).handle for found in client.containers.list(
                    filters=[f"label={REPLICA_LABEL}"])}
                handles = [handle for handle in handles if handle in running]
                stats = self._stats(client, handles) if handles else []
        if stats is None:
            log.info("%s gave no container stats: a container went while asked", self.url)
        return {usage.handle: usage for usage in map(usage_of, stats or ()) if usage.at_ns}

    @staticmethod
    def _stats(client, handles):
        """libpod's stats entries of ``handles``, read once; None when one of them is gone."""
        response = client.api.get("/containers/stats",
                                  params={"stream": "false", "containers": list(handles)})
        response.raise_for_status()
        return response.json().get("Stats")

    def list_networks(self, instance: str) -> dict[str, Mapping[str, str]]:
        def attempt():
            with self.call() as client:
                return {network.name: dict(network.attrs.get("labels") or {}) for network in
                        client.networks.list(filters={"label": f"{INSTANCE_LABEL}={instance}"})}
        return self.retry(attempt)

    def canary(self, image: str, instance: str, suffix: str = "") -> None:
        name = f"hourglass-{instance}-canary{suffix}"
        spec = ContainerSpec(
            instance=instance, replica=0, task=0, subtask=0, user=0, image=image,
            argv=("/bin/sh", "-c", "exit 0"), cpu_millis=100, memory_mib=16,
            devices=(CANARY_DEVICE,), network=name, hostname="canary", aliases=("canary",))
        args = {**create_args(spec), "name": name,
                "labels": {INSTANCE_LABEL: instance, CANARY_LABEL: "1"}}
        self.remove(name)  # one an interrupted canary left
        try:
            if not self.ensure_network(name, {INSTANCE_LABEL: instance, CANARY_LABEL: "1"}):
                raise StartFailed("task networks have no DNS: the replicas of a task would "
                                  "not find each other by name")
            with self.call(name) as client:
                try:
                    container = client.containers.create(image, **args)
                    container.start()
                    code = container.wait()
                except APIError as error:
                    if error.response is None:
                        raise
                    raise StartFailed(api_message(error)) from error
                if code != 0:
                    err = b"".join(container.logs(stdout=False, stderr=True))
                    last = " ".join(err.decode(errors="replace").strip().splitlines()[-1:])
                    raise StartFailed(f"a container like a replica's exited with {code}: "
                                      f"{last}".strip(" :"))
        finally:
            try:
                self.remove(name)
                self.remove_network(name)
            except BackendError as error:  # the next canary removes it
                log.debug("removing the canary on %s: %s", self.url, error)

    def events(self, since_ns: int | None = None, idle: float = 5.0) -> Iterator[ContainerEvent]:
        # Podman's own "since" is not exact to the nanosecond: ask from a second earlier and
        # drop what is not after since_ns here.
        params = {"stream": "true", "filters": json.dumps({"type": ["container"]})}
        if since_ns is not None:
            params["since"] = str(since_ns // NS - 1)
        with self.client(timeout=idle) as client, engine_errors():
            response = client.api.get("/events", params=params, stream=True)
            response.raise_for_status()
            try:
                for line in response.iter_lines():
                    event = event_of(json.loads(line)) if line.strip() else None
                    if event is not None and (since_ns is None or event.at.ns > since_ns):
                        yield event
            except requests.ConnectionError as error:
                if not read_timed_out(error):
                    raise
            finally:
                response.close()

    def logs(self, handle: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        with self.client() as client, engine_errors(handle):
            client.containers.get(handle)
        return self._log_chunks(handle, follow, "all" if tail is None else int(tail))

    def _log_chunks(self, handle, follow, tail):
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        params = {"stdout": "true", "stderr": "true", "follow": str(follow).lower(), "tail": tail}
        with self.client(timeout=None if follow else self.timeout) as client, \
                engine_errors(handle):
            response = client.api.get(f"/containers/{quote(handle, safe='')}/logs",
                                      params=params, stream=True)
            response.raise_for_status()
            try:
                for frame in stream_frames(response):
                    if text := decoder.decode(frame):
                        yield text
            finally:
                response.close()
        if rest := decoder.decode(b"", final=True):
            yield rest

    def exec(self, handle: str, argv: Sequence[str], timeout: float = 30.0) -> ExecResult:
        with self.call(handle, timeout=timeout, gate=None) as client:
            container = client.containers.get(handle)
            code, (out, err) = container.exec_run(list(argv), demux=True)
        return ExecResult(code, (out or b"").decode(errors="replace"),
                          (err or b"").decode(errors="replace"))

    def remove(self, handle: str) -> None:
        def attempt():
            with self.call(handle) as client:
                response = client.api.delete(f"/containers/{quote(handle, safe='')}",
                                             params={"force": "true", "timeout": 0})
                if response.status_code != 404:
                    response.raise_for_status()
        self.retry(attempt)

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> bool:
        def attempt():
            with self.call() as client:
                try:
                    network = client.networks.create(name, driver="bridge", dns_enabled=True,
                                                     options={"isolate": "true"},
                                                     labels=dict(labels))
                except APIError:
                    if not client.networks.exists(name):
                        raise
                    network = client.networks.get(name)
            return bool(network.attrs.get("dns_enabled"))
        return self.retry(attempt)

    def remove_network(self, name: str) -> None:
        def attempt():
            with self.call() as client:
                try:
                    client.networks.remove(name)
                except NotFound:
                    return
        self.retry(attempt)
