"""Miner settings and the database's instance id."""

import re

import pytest

from portal import settings


def test_a_setting_has_its_default_until_put_and_unknown_keys_are_refused(app):
    with app.app_context():
        assert settings.get("currency") == "UNC"
        settings.put("currency", "CNY")
        settings.put("currency", "RMB")
        assert settings.get("currency") == "RMB"
        with pytest.raises(KeyError):
            settings.put("instance_id", "mine")


def test_the_instance_id_is_made_once_and_differs_between_databases(app, tmp_path, monkeypatch):
    from app import create_app
    from portal import db

    with app.app_context():
        first = settings.instance_id()
        assert re.fullmatch(r"[0-9a-f]{8}", first)
        assert settings.instance_id() == first
    db.database.close()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'other.db'}")
    other = create_app({"TESTING": True})
    with other.app_context():
        db.upgrade()
        assert settings.instance_id() != first
