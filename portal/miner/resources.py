"""The miner's Resources page: system resources per node and in total, and custom resources.

System resources are discovered on the nodes, never typed in; this page shows
their capacity. Custom resources are the miner's names over a system resource
kind. The small helpers at the top serve the Specs and Pools pages as well.
"""

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from peewee import fn
from wtforms import SelectField, StringField

from portal import values
from portal.capacity import chip_kinds, node_capacities, total_capacity
from portal.miner import bp, get_or_404
from portal.models import CustomResource, SpecResource
from portal.specs import create_resource, delete_resource, resource_kinds, update_resource
from portal.units import ResourceError

# Number formatting for the resource templates (they are passed to each render).


def parse_id(text):
    """A row id typed in a form (a select's or checkbox's value), or None when it is not one."""
    return values.row_id(text)


def show_errors(form, exc):
    """Put a ResourceError's messages next to their fields; the rest above the form."""
    for name, message in exc.errors.items():
        if name and name in form:
            form[name].errors = [*form[name].errors, message]
        else:
            form.form_errors.append(message)


def answer(template, status=200, push=None, **context):
    """Render a page; a POST answered with a page tells htmx its real address (``push``)."""
    headers = {"HX-Push-Url": push} if request.method == "POST" and push else {}
    return render_template(template, **context), status, headers


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


@bp.get("/resources")
def resources():
    edit = parse_id(request.args.get("edit"))
    return _page(editing=get_or_404(CustomResource, edit) if edit else None)


@bp.post("/resources")
def create_resource_view():
    form = ResourceForm()
    if not form.validate():
        return _page(form, status=400)
    try:
        resource = create_resource(form.name.data, form.kind.data, form.description.data)
    except ResourceError as exc:
        show_errors(form, exc)
        return _page(form, status=400)
    flash(_("Created custom resource '%(name)s'.", name=resource.name), "success")
    return redirect(url_for("miner.resources"), 303)


@bp.post("/resources/<int:resource_id>")
def update_resource_view(resource_id):
    resource = get_or_404(CustomResource, resource_id)
    form = ResourceForm()
    if not form.validate():
        return _page(form, editing=resource, status=400)
    try:
        update_resource(resource, form.name.data, form.description.data)
    except ResourceError as exc:
        show_errors(form, exc)
        return _page(form, editing=CustomResource.get_by_id(resource_id), status=400)
    flash(_("Saved custom resource '%(name)s'.", name=resource.name), "success")
    return redirect(url_for("miner.resources"), 303)


@bp.post("/resources/<int:resource_id>/delete")
def delete_resource_view(resource_id):
    resource = get_or_404(CustomResource, resource_id)
    try:
        delete_resource(resource)
    except ResourceError as exc:
        flash(str(exc), "error")
        return _page(status=409)
    flash(_("Deleted custom resource '%(name)s'.", name=resource.name), "success")
    return redirect(url_for("miner.resources"), 303)
