"""Signing in and out in a real Chromium, the role walls, and every menu entry.

Renters sign in at /login, miners at /miner/login; each lands on their own
overview with their own menu. A signed-in user of the other role gets the 403
page; an anonymous visitor is sent to the login page. Every menu entry opens
a page without a server error (the pages still planned say so).
"""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import (
    MINER_MENU,
    NOT_BUILT,
    RENTER_MENU,
    WRONG_PASSWORD,
    heading,
    menu_links,
    sign_in,
    sign_out,
)

# They only sign in and out: one live server serves them all.
pytestmark = [pytest.mark.e2e, pytest.mark.shared_server]

ROLES = {
    # role: (user, login path, home path, menu, heading on the home page)
    "renter": ("rene", "/login", "/renter/", RENTER_MENU, "Welcome, rene"),
    "miner": ("mina", "/miner/login", "/miner/", MINER_MENU, "Overview"),
}
BUILT = {"Overview", "Users", "Nodes", "Resources", "Specs", "Pools", "Training tasks",
         "Machine-time", "Notebooks", "Images"}
BUILT_FOR = {"renter": {"Algorithms", "Datasets", "Templates"}, "miner": {"Monitoring"}}


@pytest.mark.parametrize("role", ROLES)
def test_sign_in_shows_menu_and_name_then_sign_out(page, live_server, role):
    name, login_path, home, menu, welcome = ROLES[role]
    url = live_server.url

    sign_in(page, url, role, name, PASSWORD)

    expect(page).to_have_url(url + home)
    expect(heading(page)).to_have_text(welcome)
    expect(menu_links(page)).to_have_text(menu)
    expect(page.locator(".who")).to_have_text(name)  # no display name: the label is the name
    expect(page.locator(".role")).to_have_text(role)

    sign_out(page)

    expect(page).to_have_url(url + login_path)
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    expect(page.locator("#logout")).to_have_count(0)
    expect(menu_links(page)).to_have_count(0)

    page.goto(url + home)
    expect(page).to_have_url(re.compile(re.escape(url + login_path) + r"\?next="))
    expect(page.locator("#login-form")).to_be_visible()


def test_login_page_keeps_next_and_returns_there(page, live_server):
    url = live_server.url
    page.goto(url + "/renter/datasets")
    expect(page).to_have_url(re.compile(r"/login\?next="))

    page.get_by_label("User name", exact=True).fill("rene")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()

    expect(page).to_have_url(url + "/renter/datasets")
    expect(heading(page)).to_have_text("Datasets")


@pytest.mark.parametrize("role, name, other_home", [
    ("renter", "rene", "/miner/users"),
    ("miner", "mina", "/renter/"),
])
def test_the_other_roles_pages_are_forbidden(page, live_server, role, name, other_home):
    sign_in(page, live_server.url, role, name, PASSWORD)
    expect(page.locator("#logout")).to_be_visible()

    response = page.goto(live_server.url + other_home)

    assert response.status == 403
    expect(heading(page)).to_have_text("403")
    expect(page.get_by_text("You may not open this page.")).to_be_visible()
    # Still signed in as before, with their own menu.
    expect(page.locator(".who")).to_have_text(name)
    expect(menu_links(page)).to_have_text(ROLES[role][3])


@pytest.mark.parametrize("role, name", [("renter", "rene"), ("miner", "mina")])
def test_wrong_password_shows_the_error(page, live_server, role, name):
    sign_in(page, live_server.url, role, name, "not-the-password")

    expect(page.get_by_role("alert")).to_have_text(WRONG_PASSWORD)
    expect(page).to_have_url(live_server.url + ROLES[role][1])
    expect(page.locator("#logout")).to_have_count(0)
    expect(page.get_by_label("User name", exact=True)).to_have_value(name)


def test_renter_cannot_sign_in_on_the_miner_page(page, live_server):
    sign_in(page, live_server.url, "miner", "rene", PASSWORD)

    expect(page.get_by_role("alert")).to_have_text(
        "This account cannot sign in here. Use the renter sign-in page.")
    expect(page.locator("#logout")).to_have_count(0)


@pytest.mark.parametrize("role", ROLES)
def test_every_menu_entry_opens_a_page(page, live_server, role):
    name, _login, home, menu, welcome = ROLES[role]
    sign_in(page, live_server.url, role, name, PASSWORD)
    expect(page).to_have_url(live_server.url + home)

    for label in menu:
        link = menu_links(page).get_by_text(label, exact=True)
        href = link.get_attribute("href")
        with page.expect_response(lambda r, href=href: r.url == live_server.url + href) as info:
            link.click()
        assert info.value.status == 200, f"{label} ({href}) answered {info.value.status}"

        expect(page).to_have_url(live_server.url + href)
        expect(menu_links(page).get_by_text(label, exact=True)).to_have_attribute(
            "aria-current", "page")
        expect(heading(page)).to_have_text(welcome if label == "Overview" else label)
        if label in BUILT | BUILT_FOR.get(role, set()):
            expect(page.get_by_text(NOT_BUILT)).to_have_count(0)
        else:
            expect(page.get_by_text(NOT_BUILT)).to_be_visible()
            expect(page.get_by_text("It will show:")).to_be_visible()
        expect(page.get_by_text("Internal Server Error")).to_have_count(0)
