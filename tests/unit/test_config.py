"""The secret key is generated once, kept private, and never weak."""

import os

import pytest

from portal.config import ConfigError, load_secret_key


def test_secret_key_is_generated_once_with_mode_0600(instance):
    first = load_secret_key(instance)
    assert len(first) >= 32
    assert os.stat(instance / "secret_key").st_mode & 0o777 == 0o600
    assert load_secret_key(instance) == first


@pytest.mark.parametrize("key", ["dev", "changeme", "SECRET", "short-key"])
def test_weak_keys_are_refused(instance, monkeypatch, key):
    monkeypatch.setenv("SECRET_KEY", key)
    with pytest.raises(ConfigError):
        load_secret_key(instance)


def test_weak_key_in_the_instance_file_is_refused(instance):
    (instance / "secret_key").write_text("changeme")
    with pytest.raises(ConfigError):
        load_secret_key(instance)


def test_strong_key_from_environment_is_used(instance, monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    assert load_secret_key(instance) == "x" * 40
    assert not (instance / "secret_key").exists()


def test_database_defaults_to_sqlite_in_wal_mode(app):
    from portal.db import database

    assert app.config["DATABASE_URL"].endswith("/instance/hourglass.db")
    with app.app_context():
        assert database.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_healthz_reports_a_database_that_is_down(instance):
    """A PostgreSQL URL where nothing listens: a real failed connection, reported as 503."""
    from app import create_app

    app = create_app({"TESTING": True, "DATABASE_URL": "postgresql://hg@127.0.0.1:1/none"})
    response = app.test_client().get("/healthz")
    body = response.get_json()
    assert response.status_code == 503
    assert "database" in body["failed"] and body["database"]["ok"] is False


def test_peer_ports_are_a_range_of_tcp_ports(monkeypatch):
    from portal.config import _port_range

    monkeypatch.setenv("HOURGLASS_PEER_PORTS", " 31000-31002 ")
    assert list(_port_range("HOURGLASS_PEER_PORTS", "30000-32767")) == [31000, 31001, 31002]
    monkeypatch.delenv("HOURGLASS_PEER_PORTS")
    assert _port_range("HOURGLASS_PEER_PORTS", "30000-32767") == range(30000, 32768)


@pytest.mark.parametrize("value", ["31000", "31002-31000", "0-10", "30000-70000", "a-b", "-"])
def test_bad_peer_ports_are_refused(monkeypatch, value):
    from portal.config import _port_range

    monkeypatch.setenv("HOURGLASS_PEER_PORTS", value)
    with pytest.raises(ConfigError, match="HOURGLASS_PEER_PORTS"):
        _port_range("HOURGLASS_PEER_PORTS", "30000-32767")
