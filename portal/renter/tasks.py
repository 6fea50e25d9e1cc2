"""The renter's training tasks: the list, the "New training task" form, a task's page, and
Stop / Run again / Delete. The rules are in ``portal.tasks``.

The list and a task's live part refresh themselves through htmx polling (every 2 s, while
something has not ended): the same URL answers its partial when htmx asks for a part
(``portal.presenters.page_or_partial``).
Without JavaScript the form offers three subtask rows (empty rows are ignored) and "Add
subtask" posts the form back with one more row.
"""

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import (
    FieldList,
    Form,
    FormField,
    HiddenField,
    SelectField,
    StringField,
    TextAreaField,
)

from portal import run_limits, task_input, task_templates, task_views, values
from portal.access import open_pools
from portal.presenters import (
    answer,
    button_post,
    done,
    launch_choices,
    page_or_partial,
    show_errors,
)
from portal.renter import pickers
from portal.renter.blueprint import bp
from portal.tasks import create_task, delete_task, get_task_or_404, request_stop, rerun

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
    subtasks = FieldList(FormField(SubtaskRow), min_entries=ROWS,
                         max_entries=task_input.MAX_SUBTASKS)
    max_run_minutes = StringField(_l("Maximum run time (minutes)"),
                                  render_kw={"inputmode": "numeric"})
    template = HiddenField()  # the id of the template this task starts from
    algorithm_version = pickers.algorithm_field()
    dataset_version = pickers.dataset_field()


def form_page(form, status=200, **extra):
    """The new task form (also what saves a template: ``portal.renter.templates``)."""
    pools, images = launch_choices(form, *(row.spec for row in form.subtasks))
    pickers.fill(form)
    template_id = values.row_id(form.template.data)
    template = (task_templates.get_template_or_404(current_user, template_id)
                if template_id else None)
    return answer("renter/task_new.html", status, push=url_for("renter.new_task"), form=form,
                  pools=pools, images=images, max_rows=task_input.MAX_SUBTASKS,
                  origin=template, **extra)


@bp.get("/tasks")
def tasks():
    views = task_views.task_views(current_user)
    return page_or_partial("renter/tasks.html", "renter/_task_table.html", views=views,
                           live=any(not v.ended for v in views))


@bp.get("/tasks/new")
def new_task():
    earlier = values.row_id(request.args.get("from"))
    chosen = values.row_id(request.args.get("template"))
    if chosen is not None:
        view = task_templates.get_template_or_404(current_user, chosen)
        data = task_templates.form_data(view.definition, ROWS, view.template)
        return form_page(TaskForm(formdata=None, data=data))
    if earlier is not None:
        definition = task_templates.task_definition(get_task_or_404(current_user, earlier))
        return form_page(TaskForm(formdata=None, data=task_templates.form_data(definition,
                                                                                ROWS)))
    form = TaskForm(formdata=None)
    form.subtasks[0].role.data = "worker"
    return form_page(form)


@bp.get("/tasks/images")
def task_images():
    """The image suggestions (a ``<datalist>``) for the pool in the query string."""
    chosen = [view for view in open_pools(current_user)
              if view.pool.name == request.args.get("pool")]
    return render_template("renter/_image_options.html",
                           images=task_input.pool_images(chosen[0]) if chosen else [],
                           jupyter_only=request.args.get("jupyter") == "1")


@bp.post("/tasks")
def create_task_view():
    form = TaskForm()
    if request.form.get("action") == "add-row":
        if len(form.subtasks) < task_input.MAX_SUBTASKS:
            form.subtasks.append_entry()
        return form_page(form)
    fields, rows = form_fields(form)
    template_id = values.row_id(form.template.data)
    template = (task_templates.get_template_or_404(current_user, template_id).template
                if template_id else None)
    try:
        task = create_task(
            current_user, fields["name"], fields["image"], fields["argv"], fields["env"],
            fields["pool"], fields["subtasks"], max_run_minutes=fields["max_run_minutes"],
            template=template, algorithm_version=fields["algorithm_version"],
            dataset_version=fields["dataset_version"])
    except task_input.TaskError as exc:
        show_errors(form, exc, error_fields(form, rows))
        return form_page(form, 400)
    return done(_("Submitted '%(name)s'.", name=task.name),
                url_for("renter.task_page", task_id=task.id))


def form_fields(form):
    """A posted ``TaskForm``'s submission: ``({name, image, argv, env, pool, subtasks,
    max_run_minutes}, the subtask rows that were not empty)``."""
    rows = [row for row in form.subtasks if (row.role.data or "").strip() or row.spec.data]
    return {"name": form.name.data, "image": form.image.data,
            "argv": task_input.command_lines(form.command.data), "env": form.env.data or "",
            "pool": form.pool.data, "max_run_minutes": form.max_run_minutes.data,
            "algorithm_version": form.algorithm_version.data,
            "dataset_version": form.dataset_version.data,
            "subtasks": [((row.role.data or "").strip(), row.spec.data, row.replicas.data)
                         for row in rows]}, rows


def error_fields(form, rows):
    """The fields a TaskError's keys name: ``argv`` is the command, ``subtasks[i].x`` the
    i-th row that was not empty (any other key is shown above the form)."""
    fields = {"name": form.name, "image": form.image, "argv": form.command, "env": form.env,
              "pool": form.pool, "max_run_minutes": form.max_run_minutes,
              "algorithm_version": form.algorithm_version,
              "dataset_version": form.dataset_version}
    for i, row in enumerate(rows):
        fields.update({f"subtasks[{i}].{name}": row[name] for name in ("role", "spec",
                                                                        "replicas")})
    return fields


@bp.get("/tasks/<int:task_id>")
def task_page(task_id):
    view = task_views.task_view(get_task_or_404(current_user, task_id))
    return page_or_partial("renter/task.html", "renter/_task_detail.html", view=view,
                           limit=run_limits.run_limit(view.task, [r.replica
                                                                  for r in view.replicas]),
                           limit_text=run_limits.limit_text)


@bp.post("/tasks/<int:task_id>/stop")
def stop_task_view(task_id):
    task = get_task_or_404(current_user, task_id)
    try:
        request_stop(task)
        flash(_("Stopped.") if task.state == "stopped" else _("Stopping…"), "success")
    except task_input.TaskError as exc:
        flash(str(exc), "error")
    return _to_page(task)


@bp.post("/tasks/<int:task_id>/rerun")
def rerun_task_view(task_id):
    task = get_task_or_404(current_user, task_id)
    return button_post(lambda: rerun(task),
                       lambda new: done(_("Submitted '%(name)s' again.", name=new.name),
                                        url_for("renter.task_page", task_id=new.id)),
                       lambda: _to_page(task))


@bp.post("/tasks/<int:task_id>/delete")
def delete_task_view(task_id):
    task = get_task_or_404(current_user, task_id)
    return button_post(lambda: delete_task(task),
                       lambda _deleted: done(_("Deleted '%(name)s'.", name=task.name),
                                             url_for("renter.tasks")),
                       lambda: _to_page(task))


def _to_page(task):
    """Back to the task's page (where a refusal's message shows)."""
    return redirect(url_for("renter.task_page", task_id=task.id), 303)
