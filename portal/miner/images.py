"""The miner's Images page: the notebooks' JupyterLab image, a button that builds it with a
progress bar and its log, and the images each node holds.

While a build runs, the page asks ``GET /miner/images/build?after=N`` every second
(htmx): the answer replaces the progress part and appends only the log lines after
line N, then polls again with the new last number, until the build has ended.
"""

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from portal.image_builds import AfterError, builds, node_images, parse_after
from portal.miner.blueprint import bp


def _image():
    """The JupyterLab image on this host: its name, whether it exists, its version."""
    version = builds().installed_version()
    return {"name": builds().image, "exists": version is not None, "version": version or ""}


@bp.get("/images")
def images():
    return render_template("miner/images.html", image=_image(), build=builds().snapshot(0),
                           nodes=node_images())


@bp.get("/images/build")
def image_build_update():
    """The htmx partial: the build's state and the log lines after ``after``."""
    try:
        after = parse_after(request.args.get("after"))
    except AfterError as exc:
        abort(400, str(exc))
    build = builds().snapshot(after)
    # The image's summary changes only when a build ends: inspect it then, not every second.
    image = _image() if build["status"] != "running" else None
    return render_template("miner/_image_build_update.html", build=build, image=image)


@bp.post("/images/build")
def start_image_build():
    force = request.form.get("force", "0")
    if force not in ("0", "1"):
        abort(400)
    _build, started = builds().start(force=force == "1")
    if started:
        flash(_("The build has started; its progress and log follow below."), "success")
    else:
        flash(_("A build is already running: here it is."), "info")
    return redirect(url_for("miner.images"), 303)
