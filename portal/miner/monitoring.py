"""The miner's Monitoring page: per node charts (CPU, memory, chips in use, each chip's
readings), the tasks running now with a page of charts each (any renter's), where the
figures come from, and how many days Hourglass keeps its own samples. Grafana's panels,
where the lab has a Grafana, stand above the built-in charts. The charts are drawn in the
browser (``static/js/charts.js``) from the JSON endpoints here (``portal.series``).
"""

from flask import current_app, flash, jsonify, redirect, request, url_for
from flask_babel import gettext as _

from portal import grafana, series, settings, values
from portal.miner.blueprint import bp, get_or_404
from portal.models import Node, Replica, Subtask, Task, User
from portal.presenters import answer
from portal.prometheus_stack import prometheus_url

RETENTION_KEY = "sample_retention_days"
MOST_DAYS = 365


@bp.get("/monitoring")
def monitoring():
    return _page()


def _page(days_typed=None, days_error=None, status=200):
    nodes = list(Node.select().where(Node.enabled == True).order_by(Node.name))  # noqa: E712
    chosen = values.row_id(request.args.get("node"))
    node = next((n for n in nodes if n.id == chosen), nodes[0] if nodes else None)
    running = (Task.select(Task, User).join(User)
               .where(Task.state.in_(("starting", "running"))).order_by(Task.id))
    return answer("miner/monitoring.html", status, push=url_for("miner.monitoring"),
                  nodes=nodes, node=node, running=list(running),
                  prometheus=values.shown_url(prometheus_url(current_app)),
                  retention=settings.get(RETENTION_KEY),
                  days_typed=days_typed, days_error=days_error,
                  grafana_panels=grafana.panels("cluster"))


@bp.get("/monitoring/nodes/<int:node_id>/metrics.json")
def node_metrics(node_id):
    return jsonify(series.node_charts(get_or_404(Node, node_id), series.range_from(request.args)))


@bp.get("/monitoring/tasks/<int:task_id>")
def task_monitoring(task_id):
    task = get_or_404(Task, task_id)
    replicas = (Replica.select(Replica, Subtask).join(Subtask).where(Replica.task == task)
                .order_by(Subtask.role, Replica.index))
    return answer("miner/monitoring_task.html", task=task, replicas=list(replicas),
                  replica_name=series.replica_name,
                  grafana_panels=grafana.panels("task", task=task.id))


@bp.get("/monitoring/tasks/<int:task_id>/metrics.json")
def task_metrics(task_id):
    return jsonify(series.task_charts(get_or_404(Task, task_id), series.range_from(request.args)))


@bp.post("/monitoring/retention")
def retention_view():
    typed = request.form.get("days", "")
    try:
        days = values.whole_number(typed, 1, MOST_DAYS)
    except values.ValueProblem:
        return _page(typed, _("Enter whole days from 1 to %(most)d.", most=MOST_DAYS), 400)
    settings.put(RETENTION_KEY, str(days))
    flash(_("Samples are kept %(days)d days.", days=days), "success")
    return redirect(url_for("miner.monitoring"), 303)
