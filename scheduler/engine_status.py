"""What ``/healthz`` says of the local node's Podman, without asking it on every request.

``EngineStatus.current()`` answers from the last look, and looks again (one
``version()`` call, by one caller at a time) only when that is older than
``max_age`` seconds: however many clients poll ``/healthz``, Podman is asked at
most once per ``max_age`` per process, and a slow Podman never holds more
than one request.
"""

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class EngineLook:
    """One look at the engine: ``ok`` with its ``version``, or the ``error``; ``at`` is
    ``time.monotonic()`` when it was taken."""

    ok: bool
    version: str
    error: str
    at: float


class EngineStatus:
    """The last known state of ``backend``'s engine (anything with ``version()``)."""

    def __init__(self, backend, max_age=5.0):
        self.backend = backend
        self.max_age = max_age
        self._look = None
        self._lock = threading.Lock()

    def current(self) -> EngineLook:
        """The last look, taken again first when it is stale and nobody else is taking it
        (the very first look is waited for)."""
        look = self._look
        if look is not None and time.monotonic() - look.at <= self.max_age:
            return look
        if not self._lock.acquire(blocking=look is None):
            return look  # another request is looking: answer from the last look
        try:
            look = self._look
            if look is None or time.monotonic() - look.at > self.max_age:
                look = self._look = self._take()
            return look
        finally:
            self._lock.release()

    def _take(self):
        try:
            return EngineLook(True, self.backend.version(), "", time.monotonic())
        except Exception as error:  # whatever a dead or odd endpoint raises
            return EngineLook(False, "", f"{type(error).__name__}: {error}", time.monotonic())
