"""Miner settings stored in the database (``Setting`` rows), with their defaults."""

from portal.models import Setting

DEFAULTS = {
    "currency": "UNC",
}


def get(key):
    """The stored value of ``key``, or its default."""
    row = Setting.get_or_none(Setting.key == key)
    return row.value if row else DEFAULTS[key]


def put(key, value):
    if key not in DEFAULTS:
        raise KeyError(key)
    Setting.insert(key=key, value=value).on_conflict(
        conflict_target=[Setting.key], update={Setting.value: value}).execute()


def init_app(app):
    app.jinja_env.globals["setting"] = get
