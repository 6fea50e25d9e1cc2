"""The renter's algorithms: the list with its "New algorithm" form (``#new``), an
algorithm's page with its versions and a "New version" form, a version's files (browse,
view, download one, download all as an archive), Delete. The rules are in
``portal.algorithms`` and ``portal.versions``; an archive arrives first through the
restartable upload (``static/js/upload.js``), and the form names it by its key.
"""

from flask import redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField

from portal import algorithms, values, versions
from portal.notebooks import get_notebook_or_404
from portal.presenters import answer, button_post, done, form_post
from portal.renter import version_space
from portal.renter.blueprint import bp


class AlgorithmForm(FlaskForm):
    name = StringField(_l("Name"))
    description = TextAreaField(_l("Description"), render_kw={"rows": 2})
    note = StringField(_l("Note on this version"))


class VersionForm(FlaskForm):
    note = StringField(_l("Note on this version"))


def _key():
    """The key of the archive uploaded for the form (upload.js adds it), or None."""
    return next((key.strip() for key in request.form.getlist("upload") if key.strip()), None)


def _list_page(form, status=200):
    return answer("renter/algorithms.html", status, push=url_for("renter.algorithms"),
                  form=form, items=algorithms.algorithms_of(current_user))


@bp.get("/algorithms", endpoint="algorithms")
def algorithms_page():
    return _list_page(AlgorithmForm(formdata=None))


@bp.post("/algorithms")
def create_algorithm_view():
    return form_post(
        AlgorithmForm,
        lambda form: algorithms.create_algorithm(
            current_user, form.name.data, form.description.data, _key(),
            form.note.data),
        lambda made: done(_("Created algorithm '%(name)s'.", name=made.name),
                          url_for("renter.algorithm_page", algorithm_id=made.id)),
        lambda form: _list_page(form, 400))


def _page(algorithm, form, status=200):
    return answer("renter/algorithm.html", status,
                  push=url_for("renter.algorithm_page", algorithm_id=algorithm.id),
                  algorithm=algorithm, form=form, versions=versions.versions(algorithm))


@bp.get("/algorithms/<int:algorithm_id>")
def algorithm_page(algorithm_id):
    algorithm = algorithms.get_algorithm_or_404(current_user, algorithm_id)
    return _page(algorithm, VersionForm(formdata=None))


@bp.post("/algorithms/<int:algorithm_id>/versions")
def new_algorithm_version_view(algorithm_id):
    algorithm = algorithms.get_algorithm_or_404(current_user, algorithm_id)
    return form_post(
        VersionForm,
        lambda form: algorithms.new_version(algorithm, _key(), form.note.data),
        lambda made: done(_("Saved version %(n)d.", n=made.number),
                          url_for("renter.algorithm_page", algorithm_id=algorithm.id)),
        lambda form: _page(algorithm, form, 400))


@bp.post("/algorithms/<int:algorithm_id>/delete")
def delete_algorithm_view(algorithm_id):
    algorithm = algorithms.get_algorithm_or_404(current_user, algorithm_id)
    return button_post(
        lambda: algorithms.delete_algorithm(algorithm),
        lambda _gone: done(_("Deleted algorithm '%(name)s'.", name=algorithm.name),
                           url_for("renter.algorithms")),
        lambda: redirect(url_for("renter.algorithm_page", algorithm_id=algorithm.id), 303))


@bp.post("/algorithms/<int:algorithm_id>/versions/<int:number>/delete")
def delete_algorithm_version_view(algorithm_id, number):
    algorithm = algorithms.get_algorithm_or_404(current_user, algorithm_id)
    version = versions.get_version_or_404(algorithm, number)
    url = url_for("renter.algorithm_page", algorithm_id=algorithm.id)
    return button_post(lambda: versions.delete_version(version),
                       lambda _gone: done(_("Deleted version %(n)d.", n=number), url),
                       lambda: redirect(url, 303))


@bp.get("/algorithms/<int:algorithm_id>/versions/<int:number>/files",
        defaults={"relpath": ""})
@bp.get("/algorithms/<int:algorithm_id>/versions/<int:number>/files/<path:relpath>")
def algorithm_files(algorithm_id, number, relpath):
    """A version's files (``portal.renter.files``): browse, view, download one or all."""
    algorithm = algorithms.get_algorithm_or_404(current_user, algorithm_id)
    version = versions.get_version_or_404(algorithm, number)
    return version_space.show(version, algorithm, relpath, "renter.algorithm_files",
                              "renter.algorithm_page", algorithm_id=algorithm.id)


@bp.post("/notebooks/<int:notebook_id>/save-code")
def save_notebook_code(notebook_id):
    """A notebook's "Save /code as a new version" (its page's form)."""
    notebook = get_notebook_or_404(current_user, notebook_id)
    chosen = request.form.get("algorithm", "").strip()
    return button_post(
        lambda: algorithms.save_notebook_code(
            notebook, (values.row_id(chosen) or 0) if chosen else None,
            request.form.get("name"), request.form.get("note")),
        lambda made: done(_("Saved /code as version %(n)d of '%(name)s'.", n=made.number,
                            name=made.algorithm.name),
                          url_for("renter.algorithm_page", algorithm_id=made.algorithm_id)),
        lambda: redirect(url_for("renter.notebook_page", notebook_id=notebook.id), 303))
