"""An algorithm's or dataset's version as a read-only ``Space`` of ``portal.renter.files``:
its pages browse, view and download its files, or the whole version as a ``.tar.gz``.
"""

from flask import url_for
from flask_babel import gettext as _

from portal import versions
from portal.renter.files import Space
from portal.renter.files import show as show_space


def space(version, owner, endpoint, **ids):
    """The read-only ``Space`` of ``version`` (of ``owner``), on ``endpoint`` with ``ids``."""
    return Space(versions.folder(version), endpoint, {**ids, "number": version.number},
                 f"{owner.name}-v{version.number}")


def show(version, owner, relpath, endpoint, owner_endpoint, **ids):
    """The page of ``relpath`` in ``version``, its way back to ``owner``'s page
    (``owner_endpoint`` with ``ids``)."""
    return show_space(space(version, owner, endpoint, **ids), relpath,
                      title=_("%(name)s, version %(n)d", name=owner.name, n=version.number),
                      back=(owner.name, url_for(owner_endpoint, **ids)))
