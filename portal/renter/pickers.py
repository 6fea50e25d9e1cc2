"""The version pickers of the new training task and new notebook forms: a select of the
algorithm versions and one of the dataset versions the renter may use, grouped by algorithm
or dataset (shared datasets included), newest version first, "none" on top.
"""

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user
from wtforms import SelectField
from wtforms.fields.choices import SelectChoice

from portal import algorithms, archives, datasets


def algorithm_field():
    return SelectField(_l("Algorithm version (at /code)"), validate_choice=False)


def dataset_field():
    return SelectField(_l("Dataset version (read-only at /dataset)"), validate_choice=False)


def version_label(version):
    """``v3 · 1.2 MiB · 5 files · its note``: a version as a picker and a page show it."""
    parts = [f"v{version.number}", archives.size_text(version.size_bytes),
             ngettext("%(num)d file", "%(num)d files", version.file_count)]
    return " · ".join(parts + ([version.note] if version.note else []))


def _choices(groups, none):
    return [SelectChoice("", none)] + [
        SelectChoice(str(v.id), version_label(v), optgroup=label)
        for label, found in groups for v in found]


def fill(form):
    """Set the choices of ``form.algorithm_version`` and ``form.dataset_version``."""
    form.algorithm_version.choices = _choices(algorithms.version_choices(current_user),
                                              _("— none —"))
    form.dataset_version.choices = _choices(datasets.version_choices(current_user),
                                            _("— none —"))
