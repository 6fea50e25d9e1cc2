"""The Podman container backend, through podman-py.

The only module that talks to a Podman API service; the rest of Hourglass
speaks of nodes and replicas. Later issues add start/stop/inspect here.
"""

from podman import PodmanClient


class PodmanBackend:
    """One Podman endpoint, reached at ``url`` (``unix:///path.sock``, ``tcp://``, ``ssh://``)."""

    def __init__(self, url, timeout=5):
        self.url = url
        self.timeout = timeout

    def client(self):
        """A new podman-py client; use it as a context manager."""
        return PodmanClient(base_url=self.url, timeout=self.timeout)

    def version(self):
        """The service's Podman version string; raises when it does not answer."""
        with self.client() as client:
            return client.version()["Version"]
