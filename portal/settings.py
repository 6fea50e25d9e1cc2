"""Miner settings stored in the database (``Setting`` rows), with their defaults, and the
database's instance id."""

import secrets

from portal.db import Prepared
from portal.models import Setting

DEFAULTS = {
    "currency": "UNC",
    # a start needs a balance covering this many minutes of the task's specs
    "min_start_minutes": "10",
    # the renter is warned when their balance lasts less than this at the current spend
    "low_balance_minutes": "60",
    # node, replica and chip samples (the built-in charts) are kept this many days
    "sample_retention_days": "7",
}


_VALUE = Prepared(lambda key: Setting.select(Setting.value).where(Setting.key == key))


def get(key):
    """The stored value of ``key``, or its default (a prepared query: every submission and
    scheduler pass reads settings)."""
    rows = _VALUE.rows(key)
    return rows[0][0] if rows else DEFAULTS[key]


def put(key, value):
    if key not in DEFAULTS:
        raise KeyError(key)
    Setting.insert(key=key, value=value).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: value}).execute()


def instance_id():
    """This Hourglass database's id (8 hex digits), made on first use and never changed. It is
    in every container and network name the scheduler makes, so two installs sharing one
    Podman never adopt each other's containers."""
    Setting.insert(key="instance_id", value=secrets.token_hex(4)).on_conflict_ignore().execute()
    return Setting.get_by_id("instance_id").value


def init_app(app):
    app.jinja_env.globals["setting"] = get
