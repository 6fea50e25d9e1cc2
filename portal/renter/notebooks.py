"""The renter's notebooks: the list, the "New notebook" form, a notebook's page, and Start /
Stop / Delete. The rules are in ``portal.notebooks``.

The list and a notebook's live part refresh themselves through htmx polling (every 2 s,
while a run has not ended): htmx asks for the same page and keeps only the live part
(``hx-select``). While a run starts, both show its step (``portal.notebooks.progress``:
a place, the container, JupyterLab answering, ready), and Open is offered only for the
subtasks whose JupyterLab answers (``portal.proxy.ready``). A notebook's page then asks
again at once and often (``load, every 500ms``), naming the step it shows (``step``,
``answering``); the server holds that request up to ``PAGE_WAIT`` seconds, checking every
50 ms, and answers as soon as the step changes, so Open turns on the moment JupyterLab
answers. **Open** (a POST, in a new tab) makes a one-time grant for the chosen
subtask's replica and answers a page that posts it at once to the notebook origin, where
the proxy turns it into that origin's own access cookie (``portal.proxy``): no secret
ever travels in a URL. The Jupyter token appears on no page.
"""

from datetime import UTC, datetime

from flask import (
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField

from portal import notebooks as rules
from portal import security_headers, values
from portal import tasks as task_rules
from portal.access import open_pools
from portal.auth import LOGIN_ID
from portal.money import format_amount
from portal.pools import pool_views
from portal.proxy import access, ready, urls
from portal.renter import bp
from portal.settings import get as setting
from portal.specs import spec_views


def _ns_text(ns):
    """Podman's nanosecond time as ``YYYY-MM-DD HH:MM:SS`` UTC, or a dash."""
    if ns is None:
        return "—"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


PAGE_WAIT = 3.0  # seconds a notebook page's refresh may wait for its step to change
STARTING = (rules.CONTAINER, rules.JUPYTER)  # steps whose page asks again at once


def openable(view):
    """``[(role, replica id)]`` of the latest run's replicas that run and have an address,
    by subtask: what Open may choose from; only those whose JupyterLab answered when the
    view was asked (``view.answering``)."""
    found = rules.running_replicas(view)
    if view.answering is None:
        return found
    return [(role, rid) for role, rid in found if rid in view.answering]


def progress_of(view):
    """The run's ``Progress`` (None when nothing starts or runs) of a marked view."""
    return rules.progress(view, view.answering or ())


HELPERS = {"reason_text": task_rules.reason_text, "ns_text": _ns_text, "openable": openable,
           "progress_of": progress_of, "STARTING": STARTING}


def _shown():
    """The ``(step, answering)`` a notebook page's refresh says it shows, or None."""
    if request.headers.get("HX-Request") != "true":
        return None
    try:
        step = values.whole_number(request.args.get("step"), min(STARTING), max(STARTING))
        answering = values.whole_number(request.args.get("answering"), 0, 99)
    except values.ValueProblem:
        return None
    return (step, answering) if step in STARTING else None


class NotebookForm(FlaskForm):
    name = StringField(_l("Name"))
    image = StringField(_l("Image"), render_kw={"list": "known-images", "autocomplete": "off"})
    spec = SelectField(_l("Spec"), validate_choice=False)
    pool = SelectField(_l("Pool"), validate_choice=False)
    count = StringField(_l("Subtasks"), default="1", render_kw={"inputmode": "numeric"})
    algorithm = StringField(_l("Algorithm (folder mounted at /code; empty: the notebook's "
                               "own folder)"),
                            render_kw={"list": "known-algorithms", "autocomplete": "off"})
    dataset = SelectField(_l("Dataset (read-only at /dataset)"), validate_choice=False)
    start = BooleanField(_l("Start it now"), default=True)


def _form_page(form, status=200):
    specs = spec_views()
    pools = open_pools(current_user, pool_views(specs=specs))
    currency = setting("currency")
    form.pool.choices = [(view.pool.name, view.pool.name) for view in pools]
    form.spec.choices = [("", _("— choose a spec —"))] + [
        (view.spec.name, _("%(spec)s · %(price)s %(currency)s per machine-hour",
                           spec=view.spec.name, price=format_amount(view.spec.price_per_hour),
                           currency=currency))
        for view in task_rules.usable_specs(pools, specs)]
    root = rules.data_root()
    form.dataset.choices = [("", _("— none —"))] + [
        (name, name) for name in rules.folder_names(root, current_user, "datasets")]
    chosen = next((v for v in pools if v.pool.name == form.pool.data), pools[0] if pools else None)
    headers = {"HX-Push-Url": url_for("renter.new_notebook")} if request.method == "POST" else {}
    return render_template(
        "renter/notebook_new.html", form=form, pools=pools,
        images=task_rules.pool_images(chosen) if chosen else [],
        algorithms=rules.folder_names(root, current_user, "algorithms")), status, headers


@bp.get("/notebooks")
def notebooks():
    views = ready.mark(rules.notebook_views(current_user))
    starting = any(p.step in STARTING for p in map(progress_of, views) if p)
    return render_template("renter/notebooks.html", views=views, starting=starting,
                           live=any(view.running for view in views), **HELPERS)


@bp.get("/notebooks/new")
def new_notebook():
    form = NotebookForm(formdata=None)
    form.image.data = current_app.config["JUPYTER_IMAGE"]
    return _form_page(form)


@bp.post("/notebooks")
def create_notebook_view():
    form = NotebookForm()
    try:
        notebook = rules.create_notebook(
            current_user, form.name.data, form.image.data, form.spec.data, form.pool.data,
            form.count.data, form.algorithm.data, form.dataset.data, start=form.start.data)
    except rules.NotebookError as exc:
        fields = {"name": form.name, "image": form.image, "spec": form.spec,
                  "pool": form.pool, "count": form.count, "algorithm": form.algorithm,
                  "dataset": form.dataset}
        for key, message in exc.errors.items():
            if key in fields:
                fields[key].errors = [*fields[key].errors, message]
            else:
                form.form_errors.append(message)
        return _form_page(form, 400)
    flash(_("Created notebook '%(name)s'.", name=notebook.name), "success")
    return redirect(url_for("renter.notebook_page", notebook_id=notebook.id), 303)


@bp.get("/notebooks/<int:notebook_id>")
def notebook_page(notebook_id):
    notebook = rules.get_notebook_or_404(current_user, notebook_id)
    since = _shown()
    view, progress = ready.watch(notebook, wait=PAGE_WAIT if since else 0, since=since,
                                 events=True)
    return render_template("renter/notebook.html", view=view, progress=progress,
                           code=_code_text(notebook), **HELPERS)


def _code_text(notebook):
    """What the page says /code is."""
    if notebook.algorithm:
        return _("your algorithm '%(name)s'", name=notebook.algorithm)
    return _("this notebook's own folder")


def _act(notebook_id, action, done):
    notebook = rules.get_notebook_or_404(current_user, notebook_id)
    try:
        action(notebook)
        flash(done, "success")
    except rules.NotebookError as exc:
        flash(str(exc), "error")
    return redirect(url_for("renter.notebook_page", notebook_id=notebook.id), 303)


@bp.post("/notebooks/<int:notebook_id>/start")
def start_notebook_view(notebook_id):
    return _act(notebook_id, rules.start_notebook, _("Starting…"))


@bp.post("/notebooks/<int:notebook_id>/stop")
def stop_notebook_view(notebook_id):
    return _act(notebook_id, rules.stop_notebook, _("Stopping… Your files stay."))


@bp.post("/notebooks/<int:notebook_id>/delete")
def delete_notebook_view(notebook_id):
    notebook = rules.get_notebook_or_404(current_user, notebook_id)
    try:
        rules.delete_notebook(notebook)
    except rules.NotebookError as exc:
        flash(str(exc), "error")
        return redirect(url_for("renter.notebook_page", notebook_id=notebook.id), 303)
    flash(_("Deleted notebook '%(name)s'.", name=notebook.name), "success")
    return redirect(url_for("renter.notebooks"), 303)


@bp.post("/notebooks/<int:notebook_id>/open")
def open_notebook_view(notebook_id):
    """Open JupyterLab of the chosen subtask (``replica``; may be left out when only one
    runs): a one-time grant, handed to the notebook origin by a form that posts itself."""
    notebook = rules.get_notebook_or_404(current_user, notebook_id)
    choices = {rid: role for role, rid in openable(rules.notebook_view(notebook))}
    wanted = request.form.get("replica", "").strip()
    if wanted:
        chosen = values.row_id(wanted)
        chosen = chosen if chosen in choices else None
    else:
        chosen = next(iter(choices)) if len(choices) == 1 else None
    if chosen is None:
        flash(_("Choose a running subtask to open.") if choices and not wanted else
              _("This notebook is not running, or not answering yet."), "error")
        return redirect(url_for("renter.notebook_page", notebook_id=notebook.id), 303)
    login_id = session.get(LOGIN_ID)
    if not login_id:  # signed in before sign-ins had ids
        login_id = session[LOGIN_ID] = access.new_login_id()
    grant = access.create_grant(current_user, chosen, login_id, urls.origin())
    response = make_response(render_template(
        "renter/notebook_open.html", notebook=notebook, role=choices[chosen], grant=grant,
        action=urls.notebook_url() + "/_hourglass/enter"))
    response.headers["Cache-Control"] = "no-store"
    # Not the portal's "same-origin": the browser would then send "Origin: null" with the
    # cross-origin POST, which the proxy refuses.
    security_headers.referrer_policy("strict-origin")
    security_headers.allow("form-action", urls.notebook_origin())
    return response
