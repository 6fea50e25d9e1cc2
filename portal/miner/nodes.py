"""The miner's Nodes page (being built)."""

from flask import render_template

from portal.miner import bp


@bp.get("/nodes")
def nodes():
    return render_template("miner/nodes.html")
