"""The miner's Specs page: resource specs a renter picks, with a price per machine-hour.

The form has one count field per custom resource, so its class is built per
request. An empty name takes the suggested one ("4 CPU-2 GB-2 TPU 1684X"),
which the page shows live through htmx and, without JavaScript, on "Suggest name".
"""

from flask import abort, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField

from portal.capacity import fits, node_capacities
from portal.miner.blueprint import bp, get_or_404, row_to_edit
from portal.models import CustomResource, ResourceSpec, SpecResource
from portal.money import decimal_text
from portal.presenters import answer, button_post, done, form_post
from portal.settings import get as setting
from portal.specs import (
    count_field,
    delete_spec,
    parse_spec,
    save_spec,
    set_spec_enabled,
    spec_views,
    suggest_name,
)
from portal.units import (
    ResourceError,
    format_cores,
    format_gb,
    parse_cores,
    parse_count,
    parse_memory_gb,
)

NUMBER = {"class": "suggest", "inputmode": "decimal", "autocomplete": "off"}


class SpecForm(FlaskForm):
    name = StringField(_l("Name (leave empty to use the suggestion)"))
    cpu = StringField(_l("CPU cores"), render_kw=NUMBER)
    memory = StringField(_l("Memory (GB)"), render_kw=NUMBER)
    price = StringField(_l("Price per machine-hour"), render_kw={"inputmode": "decimal"})


def _custom():
    return list(CustomResource.select().order_by(CustomResource.name))


def spec_form(custom, spec=None):
    """A SpecForm with a count field per custom resource: from the request, or from ``spec``
    (editing), or empty."""
    fields = {count_field(r): StringField(r.name, default="0", render_kw=NUMBER)
              for r in custom}
    form_class = type("SpecFormWithCounts", (SpecForm,), fields)
    if request.method == "POST":
        form = form_class()
    elif spec is None:
        form = form_class(formdata=None)
    else:
        counts = dict(SpecResource.select(SpecResource.resource, SpecResource.count)
                      .where(SpecResource.spec == spec).tuples())
        form = form_class(formdata=None, data={
            "name": spec.name, "cpu": format_cores(spec.cpu_millis),
            "memory": format_gb(spec.memory_mib),
            "price": decimal_text(spec.price_per_hour),
            **{count_field(r): str(counts.get(r.id, 0)) for r in custom}})
    form.price.label.text = _("Price per machine-hour (%(currency)s)",
                              currency=setting("currency"))
    return form


def _suggestion(typed, custom):
    """The suggested name for the values typed so far; None while CPU or memory is not valid."""
    try:
        items = [(r, parse_count(typed.get(count_field(r)), count_field(r)))
                 for r in custom]
        return suggest_name(parse_cores(typed.get("cpu")),
                            parse_memory_gb(typed.get("memory")), items)
    except ResourceError:
        return None


def _page(custom, form, editing=None, status=200):
    nodes = node_capacities()
    specs = spec_views()
    ready = [item.capacity for item in nodes if item.schedulable]
    unfit = {s.spec.id for s in specs if not any(fits(s.needs, c) for c in ready)}
    return answer("miner/specs.html", status,
                  push=url_for("miner.specs", edit=editing.id if editing else None),
                  specs=specs, unfit=unfit, custom=custom, form=form, editing=editing,
                  count_fields=[form[count_field(r)] for r in custom],
                  suggestion=_suggestion(form.data, custom))


@bp.get("/specs")
def specs():
    custom = _custom()
    spec = row_to_edit(ResourceSpec)
    return _page(custom, spec_form(custom, spec), spec)


@bp.get("/specs/suggestion")
def spec_suggestion():
    """The live suggestion (an htmx partial) for the values in the query string."""
    return render_template("miner/_spec_suggestion.html",
                           suggestion=_suggestion(request.args, _custom()))


@bp.post("/specs")
def create_spec_view():
    return _save(None)


@bp.post("/specs/<int:spec_id>")
def update_spec_view(spec_id):
    return _save(get_or_404(ResourceSpec, spec_id))


def _save(spec):
    custom = _custom()
    if request.form.get("action") == "suggest":
        return _suggest(custom, spec)

    def save(form):
        counts = {r: form[count_field(r)].data for r in custom}
        return save_spec(spec, parse_spec(form.name.data, form.cpu.data, form.memory.data,
                                          form.price.data, counts))

    return form_post(
        lambda: spec_form(custom), save,
        lambda saved: _back(_("Saved spec '%(name)s'.", name=saved.name)),
        lambda form: _page(custom, form, spec and ResourceSpec.get_by_id(spec.id)))


def _suggest(custom, spec):
    """"Suggest name" without JavaScript: the form again, its name the suggested one."""
    form = spec_form(custom)
    if not form.validate():
        return _page(custom, form, spec, status=400)
    suggestion = _suggestion(form.data, custom)
    if suggestion is None:
        form.form_errors.append(_("Enter CPU cores and memory first: the name is built "
                                  "from them."))
        return _page(custom, form, spec, status=400)
    form.name.data = suggestion
    return _page(custom, form, spec)


def _back(message):
    return done(message, url_for("miner.specs"))


@bp.post("/specs/<int:spec_id>/enabled")
def set_spec_enabled_view(spec_id):
    spec = get_or_404(ResourceSpec, spec_id)
    if request.form.get("enabled") not in ("0", "1"):
        abort(400)
    set_spec_enabled(spec, request.form["enabled"] == "1")
    return _back(_("'%(name)s' is now %(state)s.", name=spec.name,
                   state=_("enabled") if spec.enabled else _("disabled")))


@bp.post("/specs/<int:spec_id>/delete")
def delete_spec_view(spec_id):
    spec = get_or_404(ResourceSpec, spec_id)
    custom = _custom()
    return button_post(lambda: delete_spec(spec),
                       lambda _deleted: _back(_("Deleted spec '%(name)s'.", name=spec.name)),
                       lambda: _page(custom, spec_form(custom), status=409))
