"""The miner's Resources page: system resources per node and in total, and custom resources.

System resources are discovered on the nodes, never typed in; this page shows
their capacity. Custom resources are the miner's names over a system resource
kind.
"""

from flask import url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from peewee import fn
from wtforms import SelectField, StringField

from portal.capacity import chip_kinds, node_capacities, total_capacity
from portal.miner.blueprint import bp, get_or_404, row_to_edit
from portal.models import CustomResource, SpecResource
from portal.presenters import answer, button_post, done, form_post
from portal.specs import create_resource, delete_resource, resource_kinds, update_resource


class ResourceForm(FlaskForm):
    name = StringField(_l("Name"))
    kind = SelectField(_l("System resource"), validate_choice=False)
    description = StringField(_l("Description"))


def _page(form=None, editing=None, status=200):
    if form is None:
        form = ResourceForm(formdata=None, obj=editing)
    form.kind.choices = resource_kinds()
    nodes = node_capacities()
    uses = dict(SpecResource.select(SpecResource.resource, fn.COUNT(SpecResource.spec))
                .group_by(SpecResource.resource).tuples())
    return answer(
        "miner/resources.html", status,
        push=url_for("miner.resources", edit=editing.id if editing else None),
        nodes=nodes, kinds=chip_kinds(n.capacity for n in nodes),
        total=total_capacity(nodes), held=total_capacity(nodes, "allocated"),
        uses=uses, form=form, editing=editing,
        custom=CustomResource.select().order_by(CustomResource.name),
    )


def _back(message):
    return done(message, url_for("miner.resources"))


@bp.get("/resources")
def resources():
    return _page(editing=row_to_edit(CustomResource))


@bp.post("/resources")
def create_resource_view():
    return form_post(
        ResourceForm,
        lambda form: create_resource(form.name.data, form.kind.data, form.description.data),
        lambda resource: _back(_("Created custom resource '%(name)s'.", name=resource.name)),
        _page)


@bp.post("/resources/<int:resource_id>")
def update_resource_view(resource_id):
    resource = get_or_404(CustomResource, resource_id)
    return form_post(
        ResourceForm,
        lambda form: update_resource(resource, form.name.data, form.description.data),
        lambda _saved: _back(_("Saved custom resource '%(name)s'.", name=resource.name)),
        lambda form: _page(form, editing=CustomResource.get_by_id(resource_id)))


@bp.post("/resources/<int:resource_id>/delete")
def delete_resource_view(resource_id):
    resource = get_or_404(CustomResource, resource_id)
    return button_post(
        lambda: delete_resource(resource),
        lambda _deleted: _back(_("Deleted custom resource '%(name)s'.", name=resource.name)),
        lambda: _page(status=409))
