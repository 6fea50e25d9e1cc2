"""English and Simplified Chinese: Accept-Language, the switch, the saved choice."""

from tests.conftest import PASSWORD
from tests.support import csrf_token, login


def test_browser_language_picks_chinese(client):
    html = client.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).get_data(
        as_text=True)
    assert '<html lang="zh-CN"' in html and "登录" in html


def test_english_is_the_default(client):
    html = client.get("/login", headers={"Accept-Language": "fr-FR"}).get_data(as_text=True)
    assert '<html lang="en"' in html and "Sign in" in html


def test_switch_is_remembered_for_the_session(client):
    token = csrf_token(client, "/login")
    response = client.post("/language", data={"locale": "zh_CN", "next": "/login",
                                              "csrf_token": token})
    assert response.location == "/login"
    assert "登录" in client.get("/login").get_data(as_text=True)


def test_switch_refuses_unknown_languages_and_offsite_next(client):
    token = csrf_token(client, "/login")
    response = client.post("/language", data={"locale": "xx", "next": "//evil.example",
                                              "csrf_token": token})
    assert response.location == "/"
    assert "Sign in" in client.get("/login").get_data(as_text=True)


def test_signed_in_users_choice_is_saved(app, client, accounts):
    from portal.models import User

    login(client, "renter", "rene", PASSWORD)
    token = csrf_token(client, "/renter/")
    client.post("/language", data={"locale": "zh_CN", "csrf_token": token})
    with app.app_context():
        assert User.get(User.name == "rene").locale == "zh_CN"
    other = app.test_client()  # a new browser, English by default
    login(other, "renter", "rene", PASSWORD)
    assert "退出登录" in other.get("/renter/").get_data(as_text=True)


def test_every_message_is_translated():
    from babel.messages.pofile import read_po

    from portal.config import from_environment

    folder = from_environment("/nonexistent")["BABEL_TRANSLATION_DIRECTORIES"]
    with open(f"{folder}/zh_Hans_CN/LC_MESSAGES/messages.po", "rb") as f:
        catalog = read_po(f)
    with open(f"{folder}/messages.pot", "rb") as f:
        template = read_po(f)
    missing = [m.id for m in template if m.id and not (catalog.get(m.id) and catalog[m.id].string)]
    assert missing == []
    assert not [m.id for m in catalog if m.id and m.fuzzy]
