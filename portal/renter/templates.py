"""The renter's task templates: the list (own and shared), a template's page, Run (one
click), Edit and run (the new task form prefilled), Save as template (from the new task
form or a task's page), share with groups, delete. The rules are in
``portal.task_templates``.

A template is made and changed through the new task form itself: its "Save as a new
template" and "Save changes" buttons post the same fields here (``formaction``), so a
template holds exactly what a task may.
"""

from flask import redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from portal import run_limits, task_templates, values
from portal.models import Task
from portal.presenters import answer, button_post, done, show_errors
from portal.renter.blueprint import bp
from portal.renter.tasks import TaskForm, error_fields, form_fields, form_page
from portal.task_input import TaskError
from portal.tasks import get_task_or_404

NAME_KEYS = ("template_name", "description")
RECENT_RUNS = 10  # tasks started from a template, on its page


@bp.get("/templates")
def templates():
    return answer("renter/templates.html", views=task_templates.template_views(current_user))


def _save(template=None):
    """Save the posted new task form as a template (``template``: into that one); refused,
    the form again with every message next to its field."""
    form = TaskForm()
    fields, rows = form_fields(form)
    try:
        saved = task_templates.save_template(
            current_user, request.form.get("template_name"), request.form.get("description"),
            fields, template)
    except TaskError as exc:
        names = {key: [message] for key, message in exc.errors.items() if key in NAME_KEYS}
        show_errors(form, TaskError({key: message for key, message in exc.errors.items()
                                     if key not in NAME_KEYS}), error_fields(form, rows))
        return form_page(form, 400, template_errors=names)
    return done(_("Saved template '%(name)s'.", name=saved.name),
                url_for("renter.template_page", template_id=saved.id))


@bp.post("/templates")
def create_template_view():
    return _save()


@bp.post("/templates/<int:template_id>")
def update_template_view(template_id):
    view = task_templates.get_template_or_404(current_user, template_id, own=True)
    return _save(view.template)


@bp.get("/templates/<int:template_id>")
def template_page(template_id):
    view = task_templates.get_template_or_404(current_user, template_id)
    runs = list(Task.select().where(Task.template == view.template, Task.user == current_user,
                                    Task.deleted == False)  # noqa: E712
                .order_by(Task.id.desc()).limit(RECENT_RUNS))
    groups = task_templates.sharable_groups(current_user) if view.mine else []
    return answer("renter/template.html", view=view, runs=runs, groups=groups,
                  shared={group.id for group in view.groups}, limit_text=run_limits.limit_text)


@bp.post("/templates/<int:template_id>/run")
def run_template_view(template_id):
    view = task_templates.get_template_or_404(current_user, template_id)
    return button_post(lambda: task_templates.run_template(current_user, view.template),
                       lambda run: done(_("Submitted '%(name)s'.", name=run.task.name),
                                        url_for("renter.task_page", task_id=run.task.id)),
                       lambda: _back(template_id), errors=TaskError)


@bp.post("/templates/<int:template_id>/share")
def share_template_view(template_id):
    view = task_templates.get_template_or_404(current_user, template_id, own=True)
    ids = [values.row_id(value) for value in request.form.getlist("groups")]
    return button_post(lambda: task_templates.share_template(view.template,
                                                             [i for i in ids if i]),
                       lambda _saved: done(_("Sharing of '%(name)s' saved.",
                                             name=view.template.name), _url(template_id)),
                       lambda: _back(template_id))


@bp.post("/templates/<int:template_id>/delete")
def delete_template_view(template_id):
    view = task_templates.get_template_or_404(current_user, template_id, own=True)
    task_templates.delete_template(view.template)
    return done(_("Deleted template '%(name)s'.", name=view.template.name),
                url_for("renter.templates"))


@bp.post("/tasks/<int:task_id>/save-template")
def save_task_template_view(task_id):
    task = get_task_or_404(current_user, task_id)
    return button_post(
        lambda: task_templates.save_task_as_template(current_user, task,
                                                     request.form.get("template_name")),
        lambda saved: done(_("Saved template '%(name)s'.", name=saved.name),
                           url_for("renter.template_page", template_id=saved.id)),
        lambda: redirect(url_for("renter.task_page", task_id=task.id), 303), errors=TaskError)


def _url(template_id):
    return url_for("renter.template_page", template_id=template_id)


def _back(template_id):
    """Back to the template's page (where a refusal's message shows)."""
    return redirect(_url(template_id), 303)
