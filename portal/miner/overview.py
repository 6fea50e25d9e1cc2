"""The miner's overview page, a dashboard: nodes Ready and NotReady, chips held and free per
kind, the work running and waiting, earnings today and this month, the latest alerts (a
node NotReady, a replica lost, a failed start) and how many users there are."""

from flask import render_template

from portal import cluster
from portal.ledger import month_start
from portal.miner.blueprint import bp


@bp.get("/")
def overview():
    today, this_month = cluster.earnings()
    return render_template("miner/overview.html", nodes=cluster.nodes(), chips=cluster.chips(),
                           work=cluster.work(), today=today, this_month=this_month,
                           month=month_start(), alerts=cluster.alerts(),
                           counts=cluster.user_counts())
