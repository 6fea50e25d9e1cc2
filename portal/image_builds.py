"""What the Images page and its JSON twin share: the JupyterLab image's builds and the
images each node holds.

The builds are the scheduler's ``app.extensions["hourglass.image_builds"]`` (see
``scheduler.image_builds``; the portal never imports it): ``start(force)`` returns
``(snapshot, started)``, ``snapshot(after_line)`` the state with the log lines after
``after_line``, ``installed_version()`` the image's JupyterLab label on this host.
"""

import json

from flask import current_app
from flask_babel import gettext as _

from portal import values
from portal.models import Node


class AfterError(ValueError):
    """``after`` is not a line number."""


def builds():
    """The app's JupyterLab image builds."""
    return current_app.extensions["hourglass.image_builds"]


def parse_after(text):
    """The line number a reader already has (``after``; empty is 0); AfterError otherwise."""
    try:
        return values.optional_whole_number(text, 0, 10**18) or 0
    except values.ValueProblem:
        raise AfterError(_("'after' is the number of the last log line you have, a whole "
                           "number.")) from None


def node_images():
    """[(node, [image names])] for every node, by name, as discovery last found them."""
    rows = []
    for node in Node.select().order_by(Node.name):
        try:
            names = json.loads(node.images or "[]")
        except ValueError:
            names = []
        rows.append((node, sorted(str(name) for name in names if isinstance(name, str))))
    return rows
