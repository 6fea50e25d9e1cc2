"""The miner's New user form in a real Chromium: the groups part says when no group exists
yet, and is hidden while the role chosen is miner (only renters join groups)."""

import pytest
from playwright.sync_api import expect

from tests.e2e.test_users import as_miner, group_name_field

pytestmark = pytest.mark.e2e


def test_groups_are_offered_to_renters_only(page, live_server):
    as_miner(page, live_server)
    groups = page.locator("#new-user-groups")
    expect(groups).to_be_visible()
    expect(page.locator("#no-group-yet")).to_contain_text("No group yet")
    page.locator("#new-user").get_by_label("Role").select_option("miner")
    expect(groups).to_be_hidden()
    page.locator("#new-user").get_by_label("Role").select_option("renter")
    expect(groups).to_be_visible()

    group_name_field(page).fill("lab-a")
    page.locator("#new-group button[type=submit]").click()
    expect(page.locator("#group-list")).to_contain_text("lab-a")
    expect(page.locator("#no-group-yet")).to_have_count(0)
    expect(groups.get_by_label("lab-a")).to_be_visible()
    page.locator("#new-user").get_by_label("Role").select_option("miner")
    expect(groups).to_be_hidden()
