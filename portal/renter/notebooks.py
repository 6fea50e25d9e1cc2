"""The renter's notebooks: the list, the "New notebook" form, a notebook's page, and Start /
Stop / Delete. The rules are in ``portal.notebooks``, what a page shows in
``portal.notebook_views``.

The list and a notebook's live part refresh themselves through htmx polling (every 2 s,
while a run has not ended): the same URL answers its partial when htmx asks for a part
(``portal.presenters.page_or_partial``). While a run starts, both show its step
(``portal.notebook_progress.progress``: a place, the container, JupyterLab answering, ready), and
Open is offered only for the subtasks whose JupyterLab answers (``portal.proxy.ready``).
A notebook's page then asks again at once and often (``load, every 500ms``), naming the
step it shows (``step``, ``answering``); the server holds that request up to ``PAGE_WAIT``
seconds, checking every 50 ms, and answers as soon as the step changes, so Open turns on
the moment JupyterLab answers. **Open** (a POST, in a new tab) makes a one-time grant for the chosen
subtask's replica and answers a page that posts it at once to the notebook origin, where
the proxy turns it into that origin's own access cookie (``portal.proxy``): no secret
ever travels in a URL. The Jupyter token appears on no page.
"""

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

from portal import (
    algorithms,
    notebook_progress,
    notebook_views,
    run_limits,
    security_headers,
    values,
)
from portal.auth import LOGIN_ID
from portal.notebooks import (
    NotebookError,
    create_notebook,
    delete_notebook,
    get_notebook_or_404,
    start_notebook,
    stop_notebook,
)
from portal.presenters import (
    answer,
    button_post,
    done,
    launch_choices,
    page_or_partial,
    partial_requested,
    show_errors,
)
from portal.proxy import access, ready, urls
from portal.renter import pickers
from portal.renter.blueprint import bp

PAGE_WAIT = 3.0  # seconds a notebook page's refresh may wait for its step to change
# steps whose page asks again at once
STARTING = (notebook_progress.CONTAINER, notebook_progress.JUPYTER)


def openable(view):
    """``[(role, replica id)]`` of the latest run's replicas that run and have an address,
    by subtask: what Open may choose from; only those whose JupyterLab answered when the
    view was asked (``view.answering``)."""
    found = notebook_progress.running_replicas(view)
    if view.answering is None:
        return found
    return [(role, rid) for role, rid in found if rid in view.answering]


def progress_of(view):
    """The run's ``Progress`` (None when nothing starts or runs) of a marked view."""
    return notebook_progress.progress(view, view.answering or ())


HELPERS = {"openable": openable, "progress_of": progress_of, "STARTING": STARTING}


def _shown():
    """The ``(step, answering)`` a notebook page's refresh says it shows, or None."""
    if not partial_requested():
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
    algorithm_version = pickers.algorithm_field()
    dataset_version = pickers.dataset_field()
    max_run_minutes = StringField(_l("Maximum run time of each run (minutes)"),
                                  render_kw={"inputmode": "numeric"})
    start = BooleanField(_l("Start it now"), default=True)


def _form_page(form, status=200):
    pools, images = launch_choices(form, form.spec)
    pickers.fill(form)
    return answer("renter/notebook_new.html", status, push=url_for("renter.new_notebook"),
                  form=form, pools=pools, images=images)


@bp.get("/notebooks")
def notebooks():
    views = ready.mark(notebook_views.notebook_views(current_user))
    starting = any(p.step in STARTING for p in map(progress_of, views) if p)
    return page_or_partial("renter/notebooks.html", "renter/_notebook_table.html", views=views,
                           starting=starting, live=any(view.running for view in views),
                           **HELPERS)


@bp.get("/notebooks/new")
def new_notebook():
    form = NotebookForm(formdata=None)
    form.image.data = current_app.config["JUPYTER_IMAGE"]
    return _form_page(form)


@bp.post("/notebooks")
def create_notebook_view():
    form = NotebookForm()
    try:
        notebook = create_notebook(
            current_user, form.name.data, form.image.data, form.spec.data, form.pool.data,
            form.count.data, form.algorithm_version.data, form.dataset_version.data,
            start=form.start.data, max_run_minutes=form.max_run_minutes.data)
    except NotebookError as exc:
        show_errors(form, exc)
        return _form_page(form, 400)
    return done(_("Created notebook '%(name)s'.", name=notebook.name),
                url_for("renter.notebook_page", notebook_id=notebook.id))


@bp.get("/notebooks/<int:notebook_id>")
def notebook_page(notebook_id):
    notebook = get_notebook_or_404(current_user, notebook_id)
    since = _shown()
    view, progress = ready.watch(notebook, wait=PAGE_WAIT if since else 0, since=since,
                                 events=True)
    limit = view.run and run_limits.run_limit(view.run.task, [r.replica
                                                             for r in view.run.replicas])
    return page_or_partial("renter/notebook.html", "renter/_notebook_live.html", view=view,
                           progress=progress, my_algorithms=algorithms.algorithms_of(current_user),
                           limit=limit, limit_text=run_limits.limit_text, **HELPERS)


def _act(notebook_id, action, message):
    """Start or Stop: ``message`` flashed when the rules take it, their refusal when not;
    back to the notebook's page either way."""
    notebook = get_notebook_or_404(current_user, notebook_id)
    url = url_for("renter.notebook_page", notebook_id=notebook.id)
    return button_post(lambda: action(notebook), lambda _done: done(message, url),
                       lambda: redirect(url, 303))


@bp.post("/notebooks/<int:notebook_id>/start")
def start_notebook_view(notebook_id):
    return _act(notebook_id, start_notebook, _("Starting…"))


@bp.post("/notebooks/<int:notebook_id>/stop")
def stop_notebook_view(notebook_id):
    return _act(notebook_id, stop_notebook, _("Stopping… Your files stay."))


@bp.post("/notebooks/<int:notebook_id>/delete")
def delete_notebook_view(notebook_id):
    notebook = get_notebook_or_404(current_user, notebook_id)
    return button_post(
        lambda: delete_notebook(notebook),
        lambda _deleted: done(_("Deleted notebook '%(name)s'.", name=notebook.name),
                              url_for("renter.notebooks")),
        lambda: redirect(url_for("renter.notebook_page", notebook_id=notebook.id), 303))


@bp.post("/notebooks/<int:notebook_id>/open")
def open_notebook_view(notebook_id):
    """Open JupyterLab of the chosen subtask (``replica``; may be left out when only one
    runs): a one-time grant, handed to the notebook origin by a form that posts itself."""
    notebook = get_notebook_or_404(current_user, notebook_id)
    choices = {rid: role for role, rid in openable(notebook_views.notebook_view(notebook))}
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
