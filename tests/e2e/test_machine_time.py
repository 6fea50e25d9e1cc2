"""The miner recharges a renter on the Machine-time page, in a real Chromium, and sees the
new balance and the record; a bad amount is refused next to its field, and nothing moves."""

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, menu_links, sign_in

pytestmark = pytest.mark.e2e


def test_the_miner_recharges_a_renter_and_sees_the_balance_and_the_record(page, live_server):
    sign_in(page, live_server.url, "miner", "mina", PASSWORD)
    expect(page.locator("#logout")).to_be_visible()
    menu_links(page).get_by_text("Machine-time", exact=True).click()
    expect(heading(page)).to_have_text("Machine-time")
    rene = page.locator('tr[data-renter="rene"]')
    expect(rene.locator(".balance")).to_have_text("1,000.00 UNC")  # fund_on's recharge

    rene.get_by_role("link", name="Recharge or adjust").click()
    form = page.locator("#recharge-form")
    expect(page.get_by_role("heading", name="Recharge or adjust rene")).to_be_visible()
    form.get_by_label("Amount (UNC)", exact=True).fill("12.5x")
    form.get_by_role("button", name="Recharge").click()
    expect(form.locator(".error-text")).to_have_text("Enter an amount such as 12.5.")
    expect(rene.locator(".balance")).to_have_text("1,000.00 UNC")

    form.get_by_label("Amount (UNC)", exact=True).fill("250.5")
    form.get_by_label("Note (the renter sees it on their records)").fill("Invoice 42")
    form.get_by_role("button", name="Recharge").click()
    expect(page.get_by_role("status").filter(has_text="Recharged")).to_have_text(
        "Recharged rene with 250.50 UNC; their balance is 1,250.50 UNC.")
    expect(rene.locator(".balance")).to_have_text("1,250.50 UNC")
    expect(page.locator("#selected-balance")).to_have_text("1,250.50 UNC")

    page.locator("nav.subnav").get_by_role("link", name="Records").click()
    expect(heading(page)).to_have_text("Machine-time records")
    newest = page.locator("#records tbody tr").first
    expect(newest).to_contain_text("rene")
    expect(newest).to_contain_text("recharge")
    expect(newest.locator(".amount")).to_have_text("250.50 UNC")
    expect(newest).to_contain_text("1,250.50 UNC")
    expect(newest).to_contain_text("Invoice 42")
    expect(newest).to_contain_text("mina")
