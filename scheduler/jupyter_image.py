"""The JupyterLab image of notebooks (``HOURGLASS_JUPYTER_IMAGE``), built without a registry.

Four steps (DESIGN.md, "Proven on these machines"):

1. base image: ``mmdebstrap`` a minbase rootfs of the host's suite with python3 and
   python3-venv, ``podman import`` it as ``localhost/hourglass-python:SUITE``;
2. python version: the base image's ``python3`` X.Y, read by running it;
3. wheels: ``pip download`` JupyterLab's wheels for X.Y on the host (containers cannot
   verify TLS to PyPI) into a cache folder, reused by later builds;
4. image: ``podman build`` of ``Containerfile.jupyter`` with the wheels as its context,
   offline (``--network=none``, ``--no-index``).

A step whose result exists is skipped unless ``force``; an image that exists with the
pinned JupyterLab version skips them all.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from scheduler.podman_service import podman_env, write_containers_conf

JUPYTERLAB_VERSION = "4.6.6"
CONTAINERFILE = Path(__file__).with_name("Containerfile.jupyter")
BASE_PACKAGES = ("python3", "python3-venv")
# Leave documentation out of the rootfs (about 45 MB); licences stay.
DPKG_EXCLUDES = ("path-exclude=/usr/share/man/*", "path-exclude=/usr/share/locale/*",
                 "path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright")
STEPS = ("base image", "python version", "wheels", "image")
TAIL_LINES = 30
VERSION_LABEL = "hourglass.jupyterlab"
COMPLETE = ".complete"  # written into a wheel folder once its download succeeded


class JupyterImageError(RuntimeError):
    """A step failed; the message says which and shows the tool's last lines."""


def default_cache_dir():
    """Where downloaded wheels are kept between builds (``$XDG_CACHE_HOME/hourglass``)."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "hourglass" / "jupyter"


def host_suite(os_release="/etc/os-release"):
    """The host's Debian/Ubuntu codename (``VERSION_CODENAME``), the base image's suite."""
    try:
        text = Path(os_release).read_text()
    except OSError as exc:
        raise JupyterImageError(f"cannot read {os_release}: {exc}") from exc
    match = re.search(r"^VERSION_CODENAME=\"?([a-z0-9-]+)\"?\s*$", text, re.MULTILINE)
    if not match:
        raise JupyterImageError(f"{os_release} names no VERSION_CODENAME: "
                                "the base image needs a Debian or Ubuntu host")
    return match.group(1)


def base_image_name(suite):
    return f"localhost/hourglass-python:{suite}"


# The build runs the podman command for all its Podman work, this check included, not
# the API through PodmanBackend: podman-py's image build hands back its log only once
# the build has ended (the Images page shows each line as it comes), and each step
# must see the image store of the user running the build with ``env``'s containers.conf.
def image_label(image, env, label=VERSION_LABEL):
    """The value of ``label`` on ``image``; "" when unset, None when there is no such image."""
    result = subprocess.run(
        ["podman", "image", "inspect", "--format", f'{{{{index .Config.Labels "{label}"}}}}',
         image], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        return None
    value = result.stdout.strip()
    return "" if value == "<no value>" else value


def _require(tool, package, env):
    if shutil.which(tool, path=env.get("PATH")) is None:
        raise JupyterImageError(f"{tool} is not installed: apt-get install {package}")


class _Steps:
    """Calls ``progress(step_index, step_count, line)``; keeps each command's last lines."""

    def __init__(self, progress):
        self.progress = progress or (lambda index, count, line: None)
        self.index = 0

    def start(self, index, line):
        self.index = index
        self.say(line)

    def say(self, line):
        self.progress(self.index, len(STEPS), line)

    def run(self, argv, what, env, cwd=None):
        """Run ``argv``, reporting each output line; JupyterImageError with its tail on failure."""
        tail = deque(maxlen=TAIL_LINES)
        try:
            process = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       text=True, errors="replace", bufsize=1)
        except OSError as exc:
            raise JupyterImageError(f"{what} could not start: {exc}") from exc
        with process:
            for line in process.stdout:
                line = line.rstrip()
                if line:
                    tail.append(line)
                    self.say(line)
        if process.returncode != 0:
            raise JupyterImageError(f"{what} failed (exit status {process.returncode}):\n"
                                    + "\n".join(tail))


def build_base_image(base_image, suite, env, steps):
    """mmdebstrap a minbase rootfs of ``suite`` and ``podman import`` it as ``base_image``."""
    _require("mmdebstrap", "mmdebstrap", env)
    with tempfile.TemporaryDirectory(prefix="hg-jupyter-") as folder:
        tarball = Path(folder) / "rootfs.tar"
        argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}"]
        argv += [f"--dpkgopt={option}" for option in DPKG_EXCLUDES]
        steps.run([*argv, suite, str(tarball)], "mmdebstrap", env)
        steps.run(["podman", "import", "--change", 'CMD ["/bin/bash"]', str(tarball),
                   base_image], "podman import", env)


def python_version(base_image, env):
    """``python3``'s X.Y inside ``base_image``, read by running it."""
    code = "import sys; print('%d.%d' % sys.version_info[:2])"
    result = subprocess.run(["podman", "run", "--rm", "--network=none", base_image,
                             "python3", "-c", code], env=env, capture_output=True, text=True)
    version = result.stdout.strip()
    if result.returncode != 0 or not re.fullmatch(r"\d+\.\d+", version):
        raise JupyterImageError(f"cannot run python3 in {base_image} "
                                f"(exit status {result.returncode}):\n{result.stderr[-2000:]}")
    return version


def wheel_folder(cache_dir, python, jupyterlab=JUPYTERLAB_VERSION):
    return Path(cache_dir) / f"wheels-py{python}-jupyterlab-{jupyterlab}"


def download_wheels(python, folder, requirement, steps=None, env=None):
    """``pip download`` the wheels of ``requirement`` for Python ``python`` into ``folder``.

    Uses this interpreter's pip on the host. The folder is marked complete only when
    pip succeeded; on failure the error carries pip's last lines.
    """
    steps = steps or _Steps(None)
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    steps.run([sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--progress-bar", "off", "--python-version", python, "--only-binary=:all:",
               "-d", str(folder), requirement], "pip download", env)
    (folder / COMPLETE).write_text(requirement + "\n")
    return folder


def build_jupyter_image(image, env=None, progress=None, force=False, base_image=None,
                        cache_dir=None):
    """Build ``image`` (JupyterLab ``JUPYTERLAB_VERSION`` in /opt/jupyter, user 1000).

    ``env`` is the podman commands' environment (its ``CONTAINERS_CONF`` must pick runc
    and ulimits within the host's limits; without one, the project's config is written
    into the cache folder). ``progress(step_index, step_count, line)``, with 1-based step
    indexes, is called when a step starts and for each line of its log. Steps whose
    result exists are skipped unless ``force``. Returns ``image``; raises
    JupyterImageError with the reason.
    """
    cache_dir = Path(cache_dir or default_cache_dir())
    if env is None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        env = podman_env(write_containers_conf(cache_dir / "containers.conf"))
    steps = _Steps(progress)
    _require("podman", "podman", env)
    if not force and image_label(image, env) == JUPYTERLAB_VERSION:
        for index, name in enumerate(STEPS, 1):
            steps.start(index, f"{name}: skipped, {image} exists "
                               f"(JupyterLab {JUPYTERLAB_VERSION})")
        return image
    began = time.monotonic()

    suite = host_suite()
    base_image = base_image or base_image_name(suite)
    if force or image_label(base_image, env) is None:
        steps.start(1, f"base image: building {base_image} with mmdebstrap ({suite})")
        build_base_image(base_image, suite, env, steps)
    else:
        steps.start(1, f"base image: skipped, {base_image} exists")

    steps.start(2, f"python version: running python3 in {base_image}")
    python = python_version(base_image, env)
    steps.say(f"python version: {python}")

    wheels = wheel_folder(cache_dir, python)
    if force or not (wheels / COMPLETE).exists():
        steps.start(3, f"wheels: downloading JupyterLab {JUPYTERLAB_VERSION} "
                       f"for Python {python} into {wheels}")
        download_wheels(python, wheels, f"jupyterlab=={JUPYTERLAB_VERSION}", steps)
    else:
        steps.start(3, f"wheels: skipped, cached in {wheels}")

    steps.start(4, f"image: building {image}")
    steps.run(["podman", "build", "--pull=never", "--network=none", "--layers=false",
               "-f", str(CONTAINERFILE), "--build-arg", f"BASE={base_image}",
               "--build-arg", f"JUPYTERLAB={JUPYTERLAB_VERSION}", "-t", image, str(wheels)],
              "podman build", env)
    steps.say(f"image: built {image} in {time.monotonic() - began:.0f} s")
    return image
