"""The engine work behind the renter's images: load an uploaded archive, build from a
Containerfile with its log streamed, commit a notebook's container, the JupyterLab check,
copy an image between nodes, remove it, and what each node holds with sizes.

``RenterImages`` is what ``app.py`` puts in ``app.extensions["hourglass.renter_images"]``
(the portal never imports ``scheduler``). Each addition runs in a background thread of
this process (at most ``PARALLEL`` at once, the others wait their turn) and ends by
writing the ``Image`` row: ``ready`` with its size and ``jupyter`` flag, or ``failed``
with the reason; the end of its log is kept in ``Image.log``. While it runs, its log lines
live in memory, numbered from 1 (``snapshot(image_id, after)`` gives those after a
number), so with several gunicorn workers only the one that started it streams it. A job
ends with its process: ``fail_stale`` (the leader's hourly housekeeping) marks a row still
being added long after the build time limit, with no job here, as failed.

A build runs on the local node with the app's Podman service's containers.conf
(``scheduler.renter_build``: the ``podman`` command, no network, stopped after
``build_seconds``). Every other call goes through the adapter
(``scheduler.podman_images``).
"""

import logging
import subprocess
import tempfile
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

from portal.models import Image, database, utcnow
from scheduler.backend import BackendError, StartFailed
from scheduler.image_archive import ArchiveError, rename_archive
from scheduler.jupyter_image import JupyterImageError, base_image_name, host_suite
from scheduler.podman import PodmanBackend
from scheduler.podman_service import LocalPodmanService, podman_env, write_containers_conf
from scheduler.renter_build import build

log = logging.getLogger(__name__)

KEEP_LINES = 500  # log lines kept in memory while a job runs
KEEP_ENDED = 32  # ended jobs whose lines stay in memory (then the row's log is read)
STORE_CHARS = 64_000  # characters of the log's end kept in Image.log
MAX_LINE = 2000  # characters; a longer line is cut
PARALLEL = 2
JUPYTER_ARGV = ("jupyter-lab", "--version")
BUSY = ("pending", "building")
STALE_MARGIN = 600  # seconds past twice the build time limit before a busy row is stale
STALE_REASON = "its addition ended when the portal restarted"


class Job:
    """One addition's live log."""

    def __init__(self):
        self.lines = deque(maxlen=KEEP_LINES)
        self.last_line = 0
        self.running = True
        self.thread = None


class RenterImages:
    """The renter's images on the engines: ``local_url`` is the local node, where uploads
    are loaded and builds run; ``conf_path`` its service's containers.conf; ``presets``
    ``(name, reference, jupyter)`` of the images offered to everyone."""

    def __init__(self, local_url, conf_path, timeout=30, build_seconds=1800,
                 jupyter_seconds=60, presets=()):
        self.local_url = local_url
        self.presets = tuple(presets)
        self.conf_path = Path(conf_path)
        self.timeout = timeout
        self.build_seconds = build_seconds
        self.jupyter_seconds = jupyter_seconds
        self._lock = threading.Lock()
        self._turns = threading.BoundedSemaphore(PARALLEL)
        self._jobs = {}

    def backend(self, url):
        """The adapter of the node at ``url``."""
        return PodmanBackend(url, self.timeout)

    # --- additions, in the background ------------------------------------------------------

    def load(self, image_id, archive, done=lambda: None):
        """Load the ``podman save`` archive at ``archive`` under the image's reference;
        ``done()`` runs at the end whatever happens (the upload is discarded)."""
        self._begin(image_id, self._load, archive, done)

    def build(self, image_id, containerfile):
        """Build the image from ``containerfile`` (text) with an empty context."""
        self._begin(image_id, self._build, containerfile)

    def commit(self, image_id, node_url, container):
        """Make the image of ``container`` on the node at ``node_url``."""
        self._begin(image_id, self._commit, node_url, container)

    def snapshot(self, image_id, after=0):
        """``{"running", "last_line", "lines": [{"number", "text"}]}`` of the image's job in
        this process, lines numbered above ``after``; None when none ran here."""
        with self._lock:
            job = self._jobs.get(image_id)
            if job is None:
                return None
            return {"running": job.running, "last_line": job.last_line,
                    "lines": [{"number": n, "text": t} for n, t in job.lines if n > after]}

    def wait(self, image_id, timeout=None):
        """Wait for the image's job to end (tests, shutdown)."""
        job = self._jobs.get(image_id)
        if job is not None and job.thread is not None:
            job.thread.join(timeout)

    def fail_stale(self, now=None):
        """Mark as failed the rows still being added that no job of this process runs and
        that were made more than twice ``build_seconds`` plus STALE_MARGIN before ``now``
        (their process ended); how many."""
        cutoff = (now or utcnow()) - timedelta(seconds=2 * self.build_seconds + STALE_MARGIN)
        with self._lock:
            live = [key for key, job in self._jobs.items() if job.running]
        return Image.update(state="failed", reason=STALE_REASON).where(
            Image.state.in_(BUSY) & (Image.created_at < cutoff) & Image.id.not_in(live)
        ).execute()

    def _begin(self, image_id, work, *args):
        job = Job()
        with self._lock:
            ended = [key for key, old in self._jobs.items() if not old.running]
            for key in ended[:max(0, len(ended) - KEEP_ENDED)]:  # the oldest go first
                del self._jobs[key]
            self._jobs[image_id] = job
        job.thread = threading.Thread(target=self._run, args=(image_id, job, work, args),
                                      name=f"renter-image-{image_id}", daemon=True)
        job.thread.start()

    def _say(self, job, text):
        with self._lock:
            job.last_line += 1
            job.lines.append((job.last_line, text.rstrip("\n")[:MAX_LINE]))

    def _run(self, image_id, job, work, args):
        with self._turns, database.connection_context():
            image = Image.get_by_id(image_id)
            if not Image.update(state="building").where(
                    (Image.id == image_id) & (Image.state == "pending")).execute():
                job.running = False  # marked failed while it waited its turn (fail_stale)
                return
            try:
                node_url = work(image, job, *args)
                jupyter = self.has_jupyter(node_url, image.reference)
                size = self.backend(node_url).image_sizes().get(image.reference, 0)
                self._say(job, f"JupyterLab: {'yes' if jupyter else 'no'}")
                state, reason = "ready", ""
            except (BackendError, ArchiveError, OSError, subprocess.SubprocessError) as exc:
                state, reason, jupyter, size = "failed", str(exc) or type(exc).__name__, False, 0
                self._say(job, f"failed: {reason}")
            except Exception as exc:  # a bug: show it, keep serving
                log.exception("adding image %s failed", image_id)
                state, reason, jupyter, size = "failed", f"{type(exc).__name__}: {exc}", False, 0
                self._say(job, f"failed: {reason}")
            with self._lock:
                text = "\n".join(t for _n, t in job.lines)[-STORE_CHARS:]
            Image.update(state=state, reason=reason[:512], jupyter=jupyter, size_bytes=size,
                         log=text).where(Image.id == image_id).execute()
            job.running = False  # after the row: a reader that sees it ended sees the row

    def _load(self, image, job, archive, done):
        try:
            with tempfile.TemporaryDirectory(prefix="hg-load-") as folder:
                self._say(job, "reading the archive")
                renamed = rename_archive(archive, Path(folder) / "image.tar", image.reference)
                self._say(job, f"loading it as {image.reference}")
                with open(renamed, "rb") as data:
                    names = self.backend(self.local_url).load_archive(data)
                self._say(job, "loaded: " + ", ".join(names))
                if image.reference not in names:
                    raise ArchiveError("the engine loaded it under another name")
        finally:
            try:
                done()
            except Exception:  # the upload stays for the uploads' sweep; the image is fine
                log.exception("cleaning up after loading image %s", image.id)
        return self.local_url

    def _build(self, image, job, containerfile):
        self.conf_path.parent.mkdir(parents=True, exist_ok=True)
        env = podman_env(write_containers_conf(self.conf_path))
        build(image.reference, containerfile, env, lambda line: self._say(job, line),
              self.build_seconds)
        return self.local_url

    def _commit(self, image, job, node_url, container):
        self._say(job, f"saving the container {container} as {image.reference}")
        self.backend(node_url).commit(container, image.reference)
        return node_url

    # --- engine questions and changes -------------------------------------------------------

    def has_jupyter(self, node_url, reference):
        """Whether ``jupyter-lab --version`` runs in a throwaway container of the image."""
        try:
            code, _out = self.backend(node_url).run_once(reference, list(JUPYTER_ARGV),
                                                         timeout=self.jupyter_seconds)
        except BackendError:
            return False
        return code == 0

    def node_sizes(self, urls):
        """``{url: {image name: bytes}}`` of each node that answers; None for one that does
        not. Each Podman service is asked once (Slurm's nodes may share one), all at once: a
        page waits for the slowest, not for the sum."""
        urls = list(dict.fromkeys(urls))
        if not urls:
            return {}
        with ThreadPoolExecutor(max_workers=min(len(urls), 16)) as threads:
            return dict(zip(urls, threads.map(_sizes, urls), strict=True))

    def remove(self, reference, urls):
        """Remove ``reference`` from every node at ``urls`` (each Podman service once); the URLs
        that failed."""
        failed = []
        for url in dict.fromkeys(urls):
            try:
                self.backend(url).remove_image(reference)
            except BackendError as exc:
                log.warning("removing %s from %s: %s", reference, url, exc)
                failed.append(url)
        return failed


def ensure_image(target, reference, sources):
    """Copy ``reference`` to ``target``'s node, unless it has it, from the first backend of
    ``sources`` whose node has it; whether a copy was made (none when no node has it: the
    start then fails with the engine's own message). Raises StartFailed when the copy
    fails."""
    if target.image_exists(reference):
        return False
    for source in sources:
        try:
            if not source.image_exists(reference):
                continue
        except BackendError:  # a node that does not answer has nothing to give
            continue
        try:
            copy_image(source, target, reference)
        except BackendError as exc:
            raise StartFailed(f"copying the image {reference} to the node failed: {exc}") \
                from exc
        return True
    return False


def copy_image(source, target, reference):
    """Copy ``reference`` from the ``source`` backend's node to ``target``'s: saved to a
    temporary archive, then loaded (raises BackendError)."""
    with tempfile.TemporaryFile(prefix="hg-copy-") as archive:
        source.save_archive(reference, archive)
        archive.seek(0)
        names = target.load_archive(archive)
    if reference not in names:
        raise BackendError(f"the copy of {reference} was loaded as {', '.join(names)}")


def presets_of(app):
    """``[(name, reference, jupyter)]`` of the images the miner offers everyone: the
    JupyterLab image, the plain Python image it is built on, the busybox probe image."""
    found = [("JupyterLab", app.config["JUPYTER_IMAGE"], True)]
    try:
        found.append(("Python", base_image_name(host_suite()), False))
    except JupyterImageError:  # not a Debian or Ubuntu host: no Python image is built
        pass
    return [*found, ("busybox", app.config["PROBE_IMAGE"], False)]


def for_app(app):
    """The app's RenterImages on its local node."""
    return RenterImages(app.config["PODMAN_URL"], LocalPodmanService(app.instance_path).conf,
                        build_seconds=app.config["IMAGE_BUILD_SECONDS"],
                        presets=presets_of(app))


def _sizes(url):
    """{image name: bytes} of the node at ``url``, or None when it does not answer."""
    try:
        return PodmanBackend(url, 5).image_sizes()
    except BackendError:
        return None
