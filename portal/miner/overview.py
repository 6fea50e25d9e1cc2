"""The miner's overview page: how many renters, miners and groups there are."""

from flask import render_template

from portal.miner.blueprint import bp
from portal.models import Group, User


@bp.get("/")
def overview():
    counts = {
        "renters": User.select().where(User.role == "renter").count(),
        "miners": User.select().where(User.role == "miner").count(),
        "groups": Group.select().count(),
    }
    return render_template("miner/overview.html", counts=counts)
