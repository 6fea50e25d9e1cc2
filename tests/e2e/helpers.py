"""What the browser tests do again and again: sign in and out, find the menu and headings.

These helpers only act; the tests assert with Playwright's auto-waiting ``expect``.
"""

from playwright.sync_api import Page

from tests.support import LOGIN_PATH

RENTER_MENU = ["Overview", "Notebooks", "Training tasks", "Machine-time", "Algorithms",
               "Datasets", "Images", "Templates"]
MINER_MENU = ["Overview", "Nodes", "Resources", "Specs", "Pools", "Users", "Machine-time",
              "Monitoring"]
NOT_BUILT = "This page is not built yet."
WRONG_PASSWORD = "Wrong user name or password, or the account is disabled."


def sign_in(page: Page, url, role, name, password, *, user_label="User name",
            password_label="Password", button="Sign in"):
    """Open the login page of ``role`` on ``url``, type name and password, press the button."""
    page.goto(url + LOGIN_PATH[role])
    page.get_by_label(user_label, exact=True).fill(name)
    page.get_by_label(password_label, exact=True).fill(password)
    page.get_by_role("button", name=button, exact=True).click()


def sign_out(page: Page):
    page.locator("#logout").click()


def menu_links(page: Page):
    """The links of the main menu (the ``nav.menu`` under the top bar)."""
    return page.locator("nav.menu a")


def heading(page: Page):
    return page.get_by_role("heading", level=1)
