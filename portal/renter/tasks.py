"""The renter's training tasks: the list, the "New training task" form, a task's page, and
Stop / Run again / Delete. The rules are in ``portal.tasks``.

The list and a task's live part refresh themselves through htmx polling (every 2 s, while
something has not ended): the same URL answers the partial when htmx asks for its target.
Without JavaScript the form offers three subtask rows (empty rows are ignored) and "Add
subtask" posts the form back with one more row.
"""

from datetime import UTC, datetime
from types import SimpleNamespace

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import FieldList, Form, FormField, SelectField, StringField, TextAreaField

from portal import tasks as rules
from portal import values
from portal.access import open_pools
from portal.money import format_amount
from portal.pools import pool_views
from portal.renter import bp
from portal.settings import get as setting
from portal.specs import spec_views

ROWS = 3  # subtask rows offered before "Add subtask"


class SubtaskRow(Form):
    """One subtask row (a plain Form: the task form carries the CSRF token)."""

    role = StringField(_l("Role"), render_kw={"autocomplete": "off"})
    spec = SelectField(_l("Spec"), validate_choice=False)
    replicas = StringField(_l("Replicas"), default="1", render_kw={"inputmode": "numeric"})


class TaskForm(FlaskForm):
    name = StringField(_l("Name"))
    image = StringField(_l("Image"), render_kw={"list": "known-images", "autocomplete": "off",
                                                "placeholder": "localhost/train:latest"})
    command = TextAreaField(_l("Command: one argument per line"),
                            render_kw={"rows": 4, "placeholder": "python3\n/code/train.py"})
    env = TextAreaField(_l("Environment: NAME=value, one per line"),
                        render_kw={"rows": 3, "placeholder": "EPOCHS=10"})
    pool = SelectField(_l("Pool"), validate_choice=False)
    subtasks = FieldList(FormField(SubtaskRow), min_entries=ROWS, max_entries=rules.MAX_SUBTASKS)


def _ns_text(ns):
    """Podman's nanosecond time as ``YYYY-MM-DD HH:MM:SS`` UTC, or a dash."""
    if ns is None:
        return "—"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _cost(view):
    """Micro-units a task (``TaskView``) or subtask (``SubtaskView``) has been charged so far:
    the sum of its replicas' ``Replica.charged``, which the view loaded already (no query)."""
    return sum(item.replica.charged for item in view.replicas)


LIVE_HELPERS = {"ns_text": _ns_text, "reason_text": rules.reason_text, "cost": _cost}


def _choices(form):
    """Fill the pool and spec selects; returns the open pools (``PoolView``)."""
    specs = spec_views()
    pools = open_pools(current_user, pool_views(specs=specs))
    currency = setting("currency")
    form.pool.choices = [(view.pool.name, view.pool.name) for view in pools]
    spec_choices = [("", _("— choose a spec —"))] + [
        (view.spec.name, _("%(spec)s · %(price)s %(currency)s per machine-hour",
                           spec=view.spec.name, price=format_amount(view.spec.price_per_hour),
                           currency=currency))
        for view in rules.usable_specs(pools, specs)]
    for row in form.subtasks:
        row.spec.choices = spec_choices
    return pools


def _form_page(form, status=200):
    pools = _choices(form)
    chosen = next((v for v in pools if v.pool.name == form.pool.data), pools[0] if pools else None)
    headers = {"HX-Push-Url": url_for("renter.new_task")} if request.method == "POST" else {}
    return render_template("renter/task_new.html", form=form, pools=pools,
                           images=rules.pool_images(chosen) if chosen else [],
                           max_rows=rules.MAX_SUBTASKS), status, headers


def _prefill(view):
    """Form data for "Edit and run again": the parameters of an earlier task."""
    rows = [SimpleNamespace(role=s.subtask.role, spec=s.subtask.spec.name,
                            replicas=str(s.count)) for s in view.subtasks]
    rows += [SimpleNamespace(role="", spec="", replicas="1")] * (ROWS - len(rows))
    return {"name": view.task.name, "image": view.task.image, "command": "\n".join(view.argv),
            "env": "\n".join(f"{key}={value}" for key, value in view.env.items()),
            "pool": view.task.pool.name, "subtasks": rows}


@bp.get("/tasks")
def tasks():
    views = rules.task_views(current_user)
    template = ("renter/_task_table.html" if request.headers.get("HX-Target") == "task-table"
                else "renter/tasks.html")
    return render_template(template, views=views, live=any(not v.ended for v in views),
                           **LIVE_HELPERS)


@bp.get("/tasks/new")
def new_task():
    earlier = values.row_id(request.args.get("from"))
    if earlier is not None:
        view = rules.task_view(rules.get_task_or_404(current_user, earlier))
        return _form_page(TaskForm(formdata=None, data=_prefill(view)))
    form = TaskForm(formdata=None)
    form.subtasks[0].role.data = "worker"
    return _form_page(form)


@bp.get("/tasks/images")
def task_images():
    """The image suggestions (a ``<datalist>``) for the pool in the query string."""
    chosen = [view for view in open_pools(current_user)
              if view.pool.name == request.args.get("pool")]
    return render_template("renter/_image_options.html",
                           images=rules.pool_images(chosen[0]) if chosen else [])


@bp.post("/tasks")
def create_task_view():
    form = TaskForm()
    if request.form.get("action") == "add-row":
        if len(form.subtasks) < rules.MAX_SUBTASKS:
            form.subtasks.append_entry()
        return _form_page(form)
    rows = [row for row in form.subtasks if (row.role.data or "").strip() or row.spec.data]
    try:
        task = rules.create_task(
            current_user, form.name.data, form.image.data, rules.command_lines(form.command.data),
            form.env.data or "", form.pool.data,
            [((row.role.data or "").strip(), row.spec.data, row.replicas.data) for row in rows])
    except rules.TaskError as exc:
        _show_errors(form, rows, exc)
        return _form_page(form, 400)
    flash(_("Submitted '%(name)s'.", name=task.name), "success")
    return redirect(url_for("renter.task_page", task_id=task.id), 303)


def _show_errors(form, rows, exc):
    """Each message next to its field: ``argv`` is the command, ``subtasks[i].x`` the i-th
    row that was not empty; the rest above the form."""
    fields = {"name": form.name, "image": form.image, "argv": form.command, "env": form.env,
              "pool": form.pool}
    for i, row in enumerate(rows):
        fields.update({f"subtasks[{i}].{name}": row[name] for name in ("role", "spec",
                                                                        "replicas")})
    for key, message in exc.errors.items():
        if key in fields:
            fields[key].errors = [*fields[key].errors, message]
        else:
            form.form_errors.append(message)


@bp.get("/tasks/<int:task_id>")
def task_page(task_id):
    view = rules.task_view(rules.get_task_or_404(current_user, task_id))
    template = ("renter/_task_detail.html" if request.headers.get("HX-Target") == "task-detail"
                else "renter/task.html")
    return render_template(template, view=view, **LIVE_HELPERS)


@bp.post("/tasks/<int:task_id>/stop")
def stop_task_view(task_id):
    task = rules.get_task_or_404(current_user, task_id)
    try:
        rules.request_stop(task)
        flash(_("Stopped.") if task.state == "stopped" else _("Stopping…"), "success")
    except rules.TaskError as exc:
        flash(str(exc), "error")
    return redirect(url_for("renter.task_page", task_id=task.id), 303)


@bp.post("/tasks/<int:task_id>/rerun")
def rerun_task_view(task_id):
    task = rules.get_task_or_404(current_user, task_id)
    try:
        new = rules.rerun(task)
    except rules.TaskError as exc:
        flash(str(exc), "error")
        return redirect(url_for("renter.task_page", task_id=task.id), 303)
    flash(_("Submitted '%(name)s' again.", name=new.name), "success")
    return redirect(url_for("renter.task_page", task_id=new.id), 303)


@bp.post("/tasks/<int:task_id>/delete")
def delete_task_view(task_id):
    task = rules.get_task_or_404(current_user, task_id)
    try:
        rules.delete_task(task)
    except rules.TaskError as exc:
        flash(str(exc), "error")
        return redirect(url_for("renter.task_page", task_id=task.id), 303)
    flash(_("Deleted '%(name)s'.", name=task.name), "success")
    return redirect(url_for("renter.tasks"), 303)
