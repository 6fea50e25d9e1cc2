"""Images Hourglass builds itself, without any registry, and the ``flask images`` commands.

The probe image (``HOURGLASS_PROBE_IMAGE``) is busybox with the applets node
discovery's probe needs, imported as a root file system through a node's Podman API;
copy it to each remote node (``podman image scp``). The notebooks' JupyterLab image
(``HOURGLASS_JUPYTER_IMAGE``) is built by ``scheduler.jupyter_image``.
"""

import shutil
import tarfile
import tempfile
from pathlib import Path

import click

from scheduler.jupyter_image import JupyterImageError, build_jupyter_image
from scheduler.podman import PodmanBackend
from scheduler.podman_service import answering, podman_env, write_containers_conf

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: one static binary, no libraries
APPLETS = ("sh", "cat", "ls", "sleep", "echo", "env", "id")


def busybox_rootfs(tarball, applets=APPLETS):
    """Write a root file system tarball of the host's static busybox with ``applets`` linked
    in /bin; returns its path."""
    with tarfile.open(tarball, "w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return tarball


def import_busybox(backend, image, applets=APPLETS):
    """Build ``image`` from the host's static busybox with ``applets`` linked in /bin, on
    ``backend``'s node, through its API (the node's own image store, whichever user runs
    its Podman)."""
    with tempfile.TemporaryDirectory(prefix="hg-image-") as folder:
        tarball = busybox_rootfs(Path(folder) / "rootfs.tar", applets)
        backend.import_image(tarball, image, changes=('CMD ["/bin/sh"]',))
    return image


@click.group("images", help="Build the images Hourglass needs, without a registry.")
def images_cli():
    pass


@images_cli.command("probe")
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
def probe_command(force):
    """Build the node-discovery probe image (HOURGLASS_PROBE_IMAGE) on the local node
    (HOURGLASS_PODMAN_URL; without one, a Podman service of its own for the while)."""
    from flask import current_app

    image = current_app.config["PROBE_IMAGE"]
    if shutil.which("podman") is None or not Path(BUSYBOX).exists():
        raise click.ClickException("needs podman and busybox-static (apt-get install them)")
    try:
        with answering(current_app.config["PODMAN_URL"], current_app.instance_path) as url:
            backend = PodmanBackend(url, timeout=60)
            if force or not backend.image_exists(image):
                import_busybox(backend, image)
                click.echo(f"Built {image}.")
            else:
                click.echo(f"{image} exists.")
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@images_cli.command("jupyter")
@click.option("--force", is_flag=True, help="Rebuild every step even if its result exists.")
def jupyter_command(force):
    """Build the notebooks' JupyterLab image (HOURGLASS_JUPYTER_IMAGE) on this host."""
    from flask import current_app

    image = current_app.config["JUPYTER_IMAGE"]
    conf = write_containers_conf(Path(current_app.instance_path) / "containers.conf")

    def show(index, count, line):
        click.echo(f"[{index}/{count}] {line}")

    try:
        build_jupyter_image(image, podman_env(conf), show, force=force)
    except JupyterImageError as exc:
        raise click.ClickException(str(exc)) from exc
