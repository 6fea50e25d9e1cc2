"""The miner's Specs page (being built)."""

from flask import render_template

from portal.miner import bp


@bp.get("/specs")
def specs():
    return render_template("miner/specs.html")
