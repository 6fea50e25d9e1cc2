"""English and Simplified Chinese in a real Chromium.

The browser's Accept-Language picks the language of a first visit; the
"English" / "简体中文" buttons switch it; a signed-in user's choice is saved
with the account, so it follows them to a fresh browser.
"""

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import RENTER_MENU, heading, menu_links, sign_in, sign_out

# One live server serves them all: rene's saved language is the one thing a test
# changes, and no other test signs him in.
pytestmark = [pytest.mark.e2e, pytest.mark.shared_server]

ZH_LOGIN = {"user_label": "用户名", "password_label": "密码", "button": "登录"}
ZH_RENTER_MENU = ["概览", "Notebook", "训练任务", "机时", "算法", "数据集", "镜像", "模板"]


def html_lang(page):
    return page.locator("html")


def language_button(page, name):
    return page.locator("#language-form").get_by_role("button", name=name, exact=True)


@pytest.mark.parametrize("locale, lang, title, button", [
    ("zh-CN", "zh-CN", "登录", "登录"),
    ("en-US", "en", "Sign in", "Sign in"),
])
def test_accept_language_picks_the_language(live_server, new_page, locale, lang, title, button):
    page = new_page(locale=locale)
    page.goto(live_server.url + "/login")

    expect(html_lang(page)).to_have_attribute("lang", lang)
    expect(heading(page)).to_have_text(title)
    expect(page.locator("#login-form").get_by_role("button")).to_have_text(button)


def test_language_buttons_switch_an_anonymous_visitor(page, live_server):
    page.goto(live_server.url + "/login")
    expect(heading(page)).to_have_text("Sign in")
    expect(language_button(page, "English")).to_have_class("link current")

    language_button(page, "简体中文").click()

    expect(heading(page)).to_have_text("登录")
    expect(page.get_by_label("用户名", exact=True)).to_be_visible()
    expect(language_button(page, "简体中文")).to_have_class("link current")
    expect(page).to_have_url(live_server.url + "/login")
    page.reload()  # the choice is kept in the session; a full load also sets <html lang>
    expect(heading(page)).to_have_text("登录")
    expect(html_lang(page)).to_have_attribute("lang", "zh-CN")

    language_button(page, "English").click()

    expect(heading(page)).to_have_text("Sign in")
    page.reload()
    expect(heading(page)).to_have_text("Sign in")
    expect(html_lang(page)).to_have_attribute("lang", "en")


def test_html_lang_follows_the_switch_at_once(page, live_server):
    page.goto(live_server.url + "/login")
    language_button(page, "简体中文").click()
    expect(heading(page)).to_have_text("登录")
    expect(html_lang(page)).to_have_attribute("lang", "zh-CN", timeout=1000)


def test_a_signed_in_users_choice_follows_them(page, live_server, new_page):
    url = live_server.url
    sign_in(page, url, "renter", "rene", PASSWORD)
    expect(menu_links(page)).to_have_text(RENTER_MENU)

    language_button(page, "简体中文").click()

    expect(menu_links(page)).to_have_text(ZH_RENTER_MENU)
    expect(heading(page)).to_have_text("欢迎，rene")
    expect(page).to_have_url(url + "/renter/")
    sign_out(page)
    expect(page.get_by_text("您已退出登录。")).to_be_visible()

    # A fresh browser that asks for English still gets the saved Chinese once signed in.
    fresh = new_page(locale="en-US")
    sign_in(fresh, url, "renter", "rene", PASSWORD)
    expect(menu_links(fresh)).to_have_text(ZH_RENTER_MENU)
    expect(fresh.locator("#logout")).to_have_text("退出登录")
    fresh.reload()
    expect(html_lang(fresh)).to_have_attribute("lang", "zh-CN")

    language_button(fresh, "English").click()

    expect(menu_links(fresh)).to_have_text(RENTER_MENU)
    expect(heading(fresh)).to_have_text("Welcome, rene")
    sign_out(fresh)

    again = new_page(locale="zh-CN")  # now the saved English wins over the browser's Chinese
    sign_in(again, url, "renter", "rene", PASSWORD, **ZH_LOGIN)
    expect(menu_links(again)).to_have_text(RENTER_MENU)
    expect(again.locator("#logout")).to_have_text("Sign out")


def test_miner_in_chinese(live_server, new_page):
    page = new_page(locale="zh-CN")
    page.goto(live_server.url + "/miner/login")
    expect(heading(page)).to_have_text("算力提供方登录")

    sign_in(page, live_server.url, "miner", "mina", PASSWORD, **ZH_LOGIN)

    expect(page).to_have_url(live_server.url + "/miner/")
    expect(menu_links(page).first).to_have_text("概览")
    expect(menu_links(page).get_by_text("用户", exact=True)).to_be_visible()
    expect(page.locator("#logout")).to_have_text("退出登录")
    expect(page.locator(".role")).to_have_text("算力提供方")
    expect(heading(page)).to_have_text("概览")
    expect(page.get_by_role("navigation", name="主菜单")).to_be_visible()

    menu_links(page).get_by_text("用户", exact=True).click()
    expect(heading(page)).to_have_text("用户")
    expect(page.get_by_role("button", name="创建用户", exact=True)).to_be_visible()
