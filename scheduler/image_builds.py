"""Builds of the notebooks' JupyterLab image started from the miner's Images page.

``ImageBuilds`` is what ``app.py`` puts in ``app.extensions["hourglass.image_builds"]``:
the portal (which never imports ``scheduler``) starts a build and reads its state.
One build runs at a time, in a background thread of this process; its state (status,
step, the last ``KEEP_LINES`` log lines, times, error) lives in memory, so it is
forgotten on restart and, with several gunicorn workers, each worker has its own.
Log lines are numbered from 1, and the numbers keep growing across builds, so a
reader that passes the last number it has gets only the lines after it.

The build runs with the environment of the app's own Podman service (its
``containers.conf`` in the instance folder), as ``flask --app app images jupyter`` does.

Testing seam: the builder is a callable with ``build_jupyter_image``'s signature
(``build(image, env=..., progress=..., force=...)``). ``for_app`` takes it from the
``IMAGE_BUILDER`` config key (a callable or ``"module:function"``; from
``HOURGLASS_IMAGE_BUILDER``, which is how a browser test gives its live server a quick
builder), else ``build_jupyter_image``.
"""

import importlib
import logging
import threading
from collections import deque
from pathlib import Path

from portal.models import utcnow
from scheduler.jupyter_image import STEPS, JupyterImageError, build_jupyter_image, image_label
from scheduler.podman_service import LocalPodmanService, podman_env, write_containers_conf

log = logging.getLogger(__name__)

KEEP_LINES = 500
MAX_LINE = 4000  # characters; a longer line is cut
STATUSES = ("idle", "running", "succeeded", "failed")


class ImageBuilds:
    """One image's builds: ``start`` one in the background, ``snapshot`` its state."""

    def __init__(self, image, conf_path, build=build_jupyter_image, step_names=STEPS,
                 keep_lines=KEEP_LINES):
        self.image = image
        self.conf_path = Path(conf_path)
        self.build = build
        self.step_names = tuple(step_names)
        self._lock = threading.Lock()
        self._lines = deque(maxlen=keep_lines)  # (number, text)
        self._last_line = 0
        self._thread = None
        self._state = {"build": 0, "status": "idle", "force": False, "step": 0,
                       "step_count": len(self.step_names), "step_name": "",
                       "started_at": None, "finished_at": None, "error": ""}

    def env(self):
        """The podman commands' environment: the app's Podman service's containers.conf."""
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)
        return podman_env(write_containers_conf(self.conf_path))

    def installed_version(self):
        """The image's JupyterLab version label on this host: "" when it has none, None when
        the image (or podman) is missing. One ``podman image inspect``."""
        try:
            return image_label(self.image, self.env())
        except OSError:
            return None

    def start(self, force=False):
        """Start a build unless one runs; (snapshot of the running build, whether it is new)."""
        with self._lock:
            if self._state["status"] == "running":
                return self._snapshot(None), False
            self._lines.clear()
            self._state.update(build=self._state["build"] + 1, status="running",
                               force=bool(force), step=0, step_name="",
                               step_count=len(self.step_names), started_at=utcnow(),
                               finished_at=None, error="")
            number = self._state["build"]
            self._thread = threading.Thread(target=self._run, args=(number, bool(force)),
                                            name=f"image-build-{number}", daemon=True)
            self._thread.start()
            return self._snapshot(None), True

    def wait(self, timeout=None):
        """Wait for the running build's thread to end (for tests and shutdown)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def snapshot(self, after_line=0):
        """The state as a dict, with the kept log lines numbered above ``after_line``
        (``lines``: [{"number", "text"}]); ``last_line`` is the newest number so far."""
        with self._lock:
            return self._snapshot(after_line)

    def _snapshot(self, after_line):
        lines = [] if after_line is None else [
            {"number": number, "text": text} for number, text in self._lines
            if number > after_line]
        return {**self._state, "image": self.image, "last_line": self._last_line,
                "lines": lines}

    def _say(self, text):
        self._last_line += 1
        self._lines.append((self._last_line, text[:MAX_LINE]))

    def _progress(self, index, count, line):
        with self._lock:
            if index != self._state["step"] or count != self._state["step_count"]:
                names = self.step_names
                name = names[index - 1] if count == len(names) and 0 < index <= count else ""
                self._state.update(step=index, step_count=count, step_name=name)
            self._say(str(line))

    def _run(self, number, force):
        try:
            self.build(self.image, env=self.env(), progress=self._progress, force=force)
        except JupyterImageError as exc:
            self._finish("failed", str(exc))
        except Exception as exc:  # a bug or an unexpected tool failure: show it, keep serving
            log.exception("image build %d of %s failed", number, self.image)
            self._finish("failed", f"{type(exc).__name__}: {exc}")
        else:
            self._finish("succeeded", "")

    def _finish(self, status, error):
        with self._lock:
            if error.strip():
                self._say("build failed: " + error.strip().splitlines()[0])
            self._state.update(status=status, error=error, finished_at=utcnow())


def resolve_builder(value):
    """A builder callable from ``value``: itself, or ``"module:function"`` imported; None for
    an empty value. Raises ValueError for a string of another form."""
    if not value:
        return None
    if callable(value):
        return value
    module, sep, name = str(value).partition(":")
    if not (module and sep and name):
        raise ValueError(f"an image builder is named 'module:function', not {value!r}")
    return getattr(importlib.import_module(module), name)


def for_app(app):
    """The ImageBuilds of ``app``'s JupyterLab image (see the module docstring)."""
    build = resolve_builder(app.config.get("IMAGE_BUILDER")) or build_jupyter_image
    conf = LocalPodmanService(app.instance_path).conf
    return ImageBuilds(app.config["JUPYTER_IMAGE"], conf, build=build)
