"""A renter's machine-time in a real Chromium on a real live server: the balance on the
overview, the Machine-time page from the menu with its recharge records, a recharge
showing up, and the CSV download."""

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, menu_links, sign_in

pytestmark = pytest.mark.e2e


def test_the_renter_sees_the_balance_and_the_machine_time_page(page, live_server):
    sign_in(page, live_server.url, "renter", "rene", PASSWORD)
    expect(heading(page)).to_have_text("Welcome, rene")
    balance = page.locator("#balance")
    expect(balance).to_contain_text("1,000.00")
    expect(balance).to_contain_text("UNC")
    expect(page.locator("#runway")).to_contain_text("nothing runs")
    expect(page.locator("#low-balance")).to_have_count(0)

    menu_links(page).get_by_text("Machine-time", exact=True).click()
    expect(heading(page)).to_have_text("Machine-time")
    expect(page).to_have_url(live_server.url + "/renter/billing")
    expect(page.locator("#balance")).to_contain_text("1,000.00")
    expect(page.locator("#no-consumption")).to_be_visible()
    expect(page.locator("#credits-table tbody tr")).to_have_count(1)

    live_server.flask("billing", "recharge", "rene", "25.5", "--note", "invoice =7")
    page.reload()
    expect(page.locator("#balance")).to_contain_text("1,025.50")
    newest = page.locator("#credits-table tbody tr").first
    expect(newest).to_contain_text("25.50")
    expect(newest).to_contain_text("invoice =7")
    expect(newest).to_contain_text("the billing command")

    with page.expect_download() as info:
        page.locator("#csv-link").click()
    exported = open(info.value.path(), encoding="utf-8").read()
    assert exported.startswith("id,at_utc,kind,amount")
    assert ",recharge,25.50,1025.50," in exported and "invoice =7" in exported
