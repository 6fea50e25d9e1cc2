"""The renter's overview in a real Chromium on a real live server: counts, the spend chart
drawn by uPlot from the day's charges (no CSP violation), and the quick-create buttons
leading to their pages."""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, query, sign_in

pytestmark = pytest.mark.e2e

CREATE_PAGES = {"notebooks": ("/renter/notebooks/new", "New notebook"),
                "tasks": ("/renter/tasks/new", "New training task"),
                "templates": ("/renter/templates", "Templates"),
                "algorithms": ("/renter/algorithms", "Algorithms"),
                "datasets": ("/renter/datasets", "Datasets"),
                "images": ("/renter/images", "Images")}


def charge(server, name, micro, days_ago):
    """A charge row of renter ``name`` as metering writes it (amount and balance after)."""
    at = (datetime.now(UTC) - timedelta(days=days_ago)).replace(tzinfo=None)
    (user_id, balance), = query(server, f"SELECT id, balance FROM users WHERE name = '{name}'")
    with closing(sqlite3.connect(Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db")) as db:
        db.execute("UPDATE users SET balance = ? WHERE id = ?", (balance - micro, user_id))
        db.execute("INSERT INTO ledger (user_id, kind, amount, balance_after, at, note) "
                   "VALUES (?, 'charge', ?, ?, ?, '')",
                   (user_id, -micro, balance - micro, at.isoformat(sep=" ")))
        db.commit()


def test_the_overview_draws_spend_per_day_and_links_to_every_create_page(page, live_server):
    charge(live_server, "rene", 2_500_000, 0)
    charge(live_server, "rene", 373_333, 3)
    sign_in(page, live_server.url, "renter", "rene", PASSWORD)
    expect(heading(page)).to_have_text("Welcome, rene")
    expect(page.locator("#task-counts")).to_contain_text("None yet.")
    expect(page.locator("#nothing-running")).to_be_visible()

    chart = page.locator("#spend-chart")
    expect(chart.locator(".uplot canvas")).to_have_count(1)
    box = chart.locator("canvas").bounding_box()
    assert box["width"] > 200 and box["height"] > 100
    drawn = page.evaluate("""() => {
        const canvas = document.querySelector('#spend-chart canvas');
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width,
                                                             canvas.height).data;
        let coloured = 0;
        for (let i = 0; i < pixels.length; i += 4) {
            if (pixels[i + 3] > 0 && pixels[i + 2] > pixels[i] + 60) coloured++;
        }
        return coloured;
    }""")
    assert drawn > 50  # the bars are blue
    page.locator("#spend-per-day summary").click()
    today = datetime.now(UTC).date()
    expect(page.locator(f'#spend-table tr[data-day="{today.isoformat()}"]')).to_contain_text(
        "2.50")
    old = page.locator(f'#spend-table tr[data-day="{(today - timedelta(days=3)).isoformat()}"]')
    expect(old.locator("span.money")).to_have_attribute("title", "0.373333")
    expect(old).to_contain_text("0.37")

    for name, (path, title) in CREATE_PAGES.items():
        page.goto(live_server.url + "/renter/")
        page.locator(f'#quick-create a[data-create="{name}"]').click()
        expect(page).to_have_url(live_server.url + path + ("" if name in (
            "notebooks", "tasks") else "#new"))
        expect(heading(page)).to_contain_text(title)
        if name not in ("notebooks", "tasks"):
            expect(page.locator("#new")).to_have_count(1)
