"""Navigation of the miner and renter areas, and the pages not built yet.

Each area lists its pages once here; the base template draws the menu from
it. A page not built yet carries a third item, what it will hold: a
placeholder serves it and says so, so the whole menu works from the first day.
"""

from flask import abort, render_template
from flask_babel import lazy_gettext as _l


class Area:
    """The menu of one blueprint: ``menu``, its ``(page, label)`` in order, and ``planned``,
    {page: what it will hold} for the pages not built yet."""

    def __init__(self, blueprint, pages):
        """``pages``: ``(page, label)``, or ``(page, label, what it will hold)`` for a page
        not built yet, in menu order."""
        self.blueprint = blueprint
        self.menu = [entry[:2] for entry in pages]
        self.planned = {entry[0]: entry[2] for entry in pages if len(entry) == 3}

    def endpoint(self, page):
        """The endpoint serving ``page``: its own view, or the placeholder."""
        own = f"{self.blueprint.name}.{page}"
        return f"{self.blueprint.name}.planned" if page in self.planned else own

    def register_placeholder(self):
        """Serve every planned page at ``/<page>`` with the placeholder (404 for others)."""
        def planned(page):
            if page not in self.planned:
                abort(404)
            label = dict(self.menu)[page]
            return render_template(
                "components/planned.html", area=self, page=page, title=label,
                description=self.planned[page],
            )

        self.blueprint.add_url_rule("/<page>", "planned", planned)


MINER_PAGES = [
    ("overview", _l("Overview")),
    ("nodes", _l("Nodes")),
    ("resources", _l("Resources")),
    ("specs", _l("Specs")),
    ("pools", _l("Pools")),
    ("users", _l("Users")),
    ("machine_time", _l("Machine-time")),
    ("images", _l("Images")),
    ("monitoring", _l("Monitoring")),
]

RENTER_PAGES = [
    ("overview", _l("Overview")),
    ("notebooks", _l("Notebooks")),
    ("tasks", _l("Training tasks")),
    ("billing", _l("Machine-time")),
    ("algorithms", _l("Algorithms")),
    ("datasets", _l("Datasets")),
    ("images", _l("Images")),
    ("templates", _l("Templates")),
]
