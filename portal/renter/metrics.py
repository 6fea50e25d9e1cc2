"""The charts' JSON of a renter's training task and of their notebook's latest run
(``portal.series``): only their own (another renter's is the same 404 as none at all)."""

from flask import jsonify, request
from flask_login import current_user

from portal import series
from portal.models import Task
from portal.notebooks import get_notebook_or_404
from portal.renter.blueprint import bp
from portal.tasks import get_task_or_404


@bp.get("/tasks/<int:task_id>/metrics.json")
def task_metrics(task_id):
    return jsonify(series.task_charts(get_task_or_404(current_user, task_id),
                                      series.range_from(request.args)))


@bp.get("/notebooks/<int:notebook_id>/metrics.json")
def notebook_metrics(notebook_id):
    notebook = get_notebook_or_404(current_user, notebook_id)
    run = (Task.select().where(Task.notebook == notebook, Task.kind == "notebook")
           .order_by(Task.id.desc()).first())
    if run is None:
        return jsonify(series.no_run())
    return jsonify(series.task_charts(run, series.range_from(request.args)))
