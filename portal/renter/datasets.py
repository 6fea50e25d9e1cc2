"""The renter's datasets: the list (their own and those shared with them) with its "New
dataset" form (``#new``), a dataset's page with its versions, a "New version" form (files
and archives, optionally on top of the newest version), sharing with the renter's groups,
a version's files, Delete. The rules are in ``portal.datasets`` and ``portal.versions``;
files arrive first through the restartable upload (``static/js/upload.js``), and the form
names them by their keys. A dataset shared with the renter is read-only here: no forms,
and its changes answer 403.
"""

from flask import redirect, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, StringField, TextAreaField

from portal import datasets, values, versions
from portal.presenters import answer, button_post, done, form_post
from portal.renter import version_space
from portal.renter.blueprint import bp


class DatasetForm(FlaskForm):
    name = StringField(_l("Name"))
    description = TextAreaField(_l("Description"), render_kw={"rows": 2})
    note = StringField(_l("Note on this version"))


class DatasetVersionForm(FlaskForm):
    note = StringField(_l("Note on this version"))
    keep = BooleanField(_l("Start from the files of the newest version"))


def _keys():
    """The upload keys the form names (one ``upload`` field per file)."""
    return [key.strip() for key in request.form.getlist("upload") if key.strip()]


def _list_page(form, status=200):
    return answer("renter/datasets.html", status, push=url_for("renter.datasets"),
                  form=form, items=datasets.datasets_of(current_user))


@bp.get("/datasets", endpoint="datasets")
def datasets_page():
    return _list_page(DatasetForm(formdata=None))


@bp.post("/datasets")
def create_dataset_view():
    return form_post(
        DatasetForm,
        lambda form: datasets.create_dataset(current_user, form.name.data,
                                             form.description.data, _keys(), form.note.data),
        lambda made: done(_("Created dataset '%(name)s'.", name=made.name),
                          url_for("renter.dataset_page", dataset_id=made.id)),
        lambda form: _list_page(form, 400))


def _page(dataset, form, status=200):
    mine = dataset.user_id == current_user.id
    return answer("renter/dataset.html", status,
                  push=url_for("renter.dataset_page", dataset_id=dataset.id),
                  dataset=dataset, form=form, versions=versions.versions(dataset), mine=mine,
                  shares=datasets.shares(dataset) if mine else [],
                  groups=datasets.share_choices(current_user) if mine else [])


@bp.get("/datasets/<int:dataset_id>")
def dataset_page(dataset_id):
    dataset = datasets.get_dataset_or_404(current_user, dataset_id)
    return _page(dataset, DatasetVersionForm(formdata=None))


@bp.post("/datasets/<int:dataset_id>/versions")
def new_dataset_version_view(dataset_id):
    dataset = datasets.get_dataset_or_404(current_user, dataset_id, change=True)
    return form_post(
        DatasetVersionForm,
        lambda form: datasets.new_version(dataset, _keys(), form.note.data, form.keep.data),
        lambda made: done(_("Saved version %(n)d.", n=made.number),
                          url_for("renter.dataset_page", dataset_id=dataset.id)),
        lambda form: _page(dataset, form, 400))


def _back(dataset):
    return redirect(url_for("renter.dataset_page", dataset_id=dataset.id), 303)


@bp.post("/datasets/<int:dataset_id>/share")
def share_dataset_view(dataset_id):
    dataset = datasets.get_dataset_or_404(current_user, dataset_id, change=True)
    group = values.row_id(request.form.get("group"))
    return button_post(lambda: datasets.share(dataset, group),
                       lambda _done: done(_("Shared."), url_for("renter.dataset_page",
                                                                dataset_id=dataset.id)),
                       lambda: _back(dataset))


@bp.post("/datasets/<int:dataset_id>/unshare")
def unshare_dataset_view(dataset_id):
    dataset = datasets.get_dataset_or_404(current_user, dataset_id, change=True)
    datasets.unshare(dataset, values.row_id(request.form.get("group")))
    return done(_("No longer shared with that group."),
                url_for("renter.dataset_page", dataset_id=dataset.id))


@bp.post("/datasets/<int:dataset_id>/delete")
def delete_dataset_view(dataset_id):
    dataset = datasets.get_dataset_or_404(current_user, dataset_id, change=True)
    return button_post(
        lambda: datasets.delete_dataset(dataset),
        lambda _gone: done(_("Deleted dataset '%(name)s'.", name=dataset.name),
                           url_for("renter.datasets")),
        lambda: _back(dataset))


@bp.post("/datasets/<int:dataset_id>/versions/<int:number>/delete")
def delete_dataset_version_view(dataset_id, number):
    dataset = datasets.get_dataset_or_404(current_user, dataset_id, change=True)
    version = versions.get_version_or_404(dataset, number)
    return button_post(lambda: versions.delete_version(version),
                       lambda _gone: done(_("Deleted version %(n)d.", n=number),
                                          url_for("renter.dataset_page", dataset_id=dataset.id)),
                       lambda: _back(dataset))


@bp.get("/datasets/<int:dataset_id>/versions/<int:number>/files", defaults={"relpath": ""})
@bp.get("/datasets/<int:dataset_id>/versions/<int:number>/files/<path:relpath>")
def dataset_files(dataset_id, number, relpath):
    """A version's files (``portal.renter.files``): browse, view, download one or all."""
    dataset = datasets.get_dataset_or_404(current_user, dataset_id)
    version = versions.get_version_or_404(dataset, number)
    return version_space.show(version, dataset, relpath, "renter.dataset_files",
                              "renter.dataset_page", dataset_id=dataset.id)
