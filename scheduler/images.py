"""Images Hourglass builds itself, without any registry: ``podman import`` of a rootfs.

The probe image (``HOURGLASS_PROBE_IMAGE``) is busybox with the applets node
discovery's probe needs; copy it to each remote node (``podman image scp``).
"""

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import click

BUSYBOX = "/bin/busybox"  # Debian's busybox-static: one static binary, no libraries
APPLETS = ("sh", "cat", "ls", "sleep", "echo", "env", "id")


def image_exists(image, env=None):
    return subprocess.run(["podman", "image", "exists", image], env=env).returncode == 0


def import_busybox(image, env=None, applets=APPLETS):
    """Build ``image`` from the host's static busybox with ``applets`` linked in /bin."""
    with tempfile.TemporaryDirectory(prefix="hg-image-") as folder:
        tarball = Path(folder) / "rootfs.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in applets:
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link)
        subprocess.run(["podman", "import", "--change", 'CMD ["/bin/sh"]', str(tarball), image],
                       env=env, check=True, capture_output=True)
    return image


@click.group("images", help="Build the images Hourglass needs, without a registry.")
def images_cli():
    pass


@images_cli.command("probe")
@click.option("--force", is_flag=True, help="Rebuild even if the image exists.")
def probe_command(force):
    """Build the node-discovery probe image (HOURGLASS_PROBE_IMAGE) on this host."""
    from flask import current_app

    image = current_app.config["PROBE_IMAGE"]
    if shutil.which("podman") is None or not Path(BUSYBOX).exists():
        raise click.ClickException("needs podman and busybox-static (apt-get install them)")
    if force or not image_exists(image):
        import_busybox(image)
        click.echo(f"Built {image}.")
    else:
        click.echo(f"{image} exists.")
