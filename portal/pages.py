"""Navigation of the miner and renter areas, and the pages not built yet.

Each area lists its pages once here; the base template draws the menu from
it. A page still in ``planned`` is served by a placeholder that says what it
will hold, so the whole menu works from the first day.
"""

from flask import abort, render_template
from flask_babel import lazy_gettext as _l


class Area:
    """The menu of one blueprint: ``(page, label)`` in order, and the planned pages."""

    def __init__(self, blueprint, menu, planned):
        self.blueprint = blueprint
        self.menu = menu
        self.planned = planned

    def endpoint(self, page):
        """The endpoint serving ``page``: its own view, or the placeholder."""
        own = f"{self.blueprint.name}.{page}"
        return f"{self.blueprint.name}.planned" if page in self.planned else own

    def register_placeholder(self):
        def planned(page):
            if page not in self.planned:
                abort(404)
            label = dict(self.menu)[page]
            return render_template(
                "components/planned.html", area=self, page=page, title=label,
                description=self.planned[page],
            )

        self.blueprint.add_url_rule("/<page>", "planned", planned)


MINER_MENU = [
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

MINER_PLANNED = {
    "monitoring": _l("Live use of chips, CPU and memory across the nodes."),
}

RENTER_MENU = [
    ("overview", _l("Overview")),
    ("notebooks", _l("Notebooks")),
    ("tasks", _l("Training tasks")),
    ("billing", _l("Machine-time")),
    ("algorithms", _l("Algorithms")),
    ("datasets", _l("Datasets")),
    ("images", _l("Images")),
    ("templates", _l("Templates")),
]

RENTER_PLANNED = {
    "algorithms": _l("Your code, mounted at /code in notebooks and tasks."),
    "datasets": _l("Your data, mounted read-only at /dataset."),
    "images": _l("Container images you can run."),
    "templates": _l("Saved task settings to start a new run in one click."),
}
