"""The miner's Resources page (being built)."""

from flask import render_template

from portal.miner import bp


@bp.get("/resources")
def resources():
    return render_template("miner/resources.html")
