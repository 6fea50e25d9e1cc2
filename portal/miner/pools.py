"""The miner's Pools page (being built)."""

from flask import render_template

from portal.miner import bp


@bp.get("/pools")
def pools():
    return render_template("miner/pools.html")
