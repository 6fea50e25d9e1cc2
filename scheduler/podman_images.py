"""The image calls of the Podman adapter (``PodmanBackend`` inherits them): load and save an
archive, commit a container, remove an image, list images with their sizes, and run a
throwaway container of an image once (the JupyterLab check). All through podman-py's API
client; a build is the one image call that goes another way (``scheduler.renter_images``
says why).
"""

from urllib.parse import quote

from podman.errors import APIError

from scheduler.backend import BackendError
from scheduler.libpod import CPU_PERIOD_US, MIB
from scheduler.podman_endpoint import PodmanEndpoint
from scheduler.podman_errors import api_message

CHUNK = 1 << 20
LONG = 600  # seconds an archive's save or load may take
RUN_ONCE_LABEL = "hourglass.run-once"
RUN_ONCE_MEMORY = 512 * MIB  # a throwaway container's limits: memory (no swap), one CPU
RUN_ONCE_PIDS = 64


class ImageStore(PodmanEndpoint):
    """A node's image store, through its Podman API."""

    def image_sizes(self) -> dict[str, int]:
        """``{tagged name: size in bytes}`` of every tagged image on the node; asked once
        (a page waits for it)."""
        with self.call() as client:
            return {tag: int(image.attrs.get("Size") or 0)
                    for image in client.images.list() for tag in image.tags}

    def load_archive(self, fileobj) -> list[str]:
        """Load a ``podman save`` archive read from ``fileobj`` (docker or OCI archive); the
        names it was loaded under."""
        with self.call(timeout=LONG, gate=None) as client:
            response = client.api.post("/images/load", data=fileobj,
                                       headers={"Content-Type": "application/x-tar"})
            response.raise_for_status()
            return list(response.json().get("Names") or [])

    def save_archive(self, image: str, fileobj) -> None:
        """Write ``image`` as an OCI archive (which names it) into ``fileobj``."""
        with self.call(timeout=LONG, gate=None) as client:
            response = client.api.get(f"/images/{quote(image, safe='')}/get",
                                      params={"format": "oci-archive"}, stream=True)
            try:
                response.raise_for_status()
                for chunk in response.iter_content(CHUNK):
                    fileobj.write(chunk)
            finally:
                response.close()

    def commit(self, container: str, image: str) -> None:
        """Make ``image`` (``repository:tag``) of ``container``'s file system now."""
        repository, _colon, tag = image.rpartition(":")
        with self.call(container, timeout=LONG, gate=None) as client:
            client.containers.get(container).commit(repository=repository, tag=tag)

    def remove_image(self, image: str) -> bool:
        """Remove the name ``image`` from the node (the image too once no name is left);
        False when the node had no such image."""
        def attempt():
            with self.call() as client:
                response = client.api.delete(f"/images/{quote(image, safe='')}")
                if response.status_code == 404:
                    return False
                response.raise_for_status()
                return True
        return self.retry(attempt)

    def run_once(self, image: str, argv: list[str], timeout: float = 30) -> tuple[int, str]:
        """Run ``argv`` (no shell) in a throwaway container of ``image`` with no network, no
        capabilities, no new privileges, one CPU, RUN_ONCE_MEMORY and RUN_ONCE_PIDS;
        ``(exit code, output)``. The container is removed whatever happens; raises
        BackendError when it cannot run or outlasts ``timeout``."""
        with self.call(timeout=timeout, gate=None) as client:
            try:
                container = client.containers.create(
                    image, entrypoint=[argv[0]], command=list(argv[1:]), network_mode="none",
                    privileged=False, cap_drop=["ALL"], no_new_privileges=True,
                    pids_limit=RUN_ONCE_PIDS, mem_limit=RUN_ONCE_MEMORY,
                    memswap_limit=RUN_ONCE_MEMORY, cpu_period=CPU_PERIOD_US,
                    cpu_quota=CPU_PERIOD_US, labels={RUN_ONCE_LABEL: "1"})
            except APIError as error:
                raise BackendError(api_message(error)) from error
            try:
                container.start()
                code = container.wait()
                out = b"".join(container.logs(stdout=True, stderr=True))
                return int(code), out.decode(errors="replace")
            except APIError as error:
                raise BackendError(api_message(error)) from error
            finally:
                try:
                    client.api.delete(f"/containers/{container.id}",
                                      params={"force": "true", "timeout": 0})
                except APIError:  # the orphan sweep removes it later
                    pass
