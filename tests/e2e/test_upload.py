"""Uploading into a notebook's folder in Chromium, with no container running: a 30 MB file
goes in pieces through /api/v1/uploads (static/js/upload.js) while the progress bar
advances, lands in the folder, and downloads back byte for byte."""

import os
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, query, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.podman]

SIZE = 30 * 10**6
# Samples the progress bar and its text every 5 ms (the bar's value is a property: no
# attribute changes to observe), reporting each change to the test.
WATCH = """() => {
  let last = null;
  setInterval(() => {
    const bar = document.getElementById('upload-files-progress');
    const text = document.getElementById('upload-files-status').textContent;
    if (bar && !bar.hidden && text !== last) {
      last = text;
      window.reportProgress(bar.value, text);
    }
  }, 5);
}"""


def add_notebook(server, renter="rene"):
    """A notebook of ``renter``'s, never started (a row as creating one writes it)."""
    (user_id,), = query(server, f"SELECT id FROM users WHERE name = '{renter}'")
    path = Path(server.env["HOURGLASS_INSTANCE"]) / "hourglass.db"
    with closing(sqlite3.connect(path)) as db, db:
        cursor = db.execute(
            "INSERT INTO notebooks (user_id, name, image, count, created_at, deleted) "
            "VALUES (?, 'lab', 'localhost/hourglass-jupyter:latest', 1, "
            "datetime('now'), 0)", (user_id,))
        return cursor.lastrowid


def test_upload_with_progress_then_download(page, live_server, tmp_path):
    """The bar shows values between 0 and 100 while the pieces leave and ends at 100%
    with the MiB sent; the file lands in the folder and downloads back the same."""
    notebook_id = add_notebook(live_server)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(SIZE))
    sign_in(page, live_server.url, "renter", "rene", PASSWORD)
    page.wait_for_url("**/renter**")
    page.goto(f"{live_server.url}/renter/notebooks/{notebook_id}")
    page.locator("#notebook-files").click()
    expect(heading(page)).to_have_text("Files of lab")
    expect(page.locator("#files-empty")).to_be_visible()
    # A slower link (about 40 MB/s up), so the bar has time to be seen moving.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": 40 * 2**20})
    seen = []
    page.expose_binding("reportProgress", lambda source, value, text: seen.append((value, text)))
    page.locator("#upload-files").set_input_files(str(source))
    page.evaluate(WATCH)
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#files-table")).to_contain_text("big.bin", timeout=60_000)
    # the bar moved while the pieces left, never back, and ended full
    assert any(0 < value < 100 for value, _text in seen), seen
    assert [v for v, _t in seen] == sorted(v for v, _t in seen)
    assert seen[-1][0] == 100 and "28.6 MiB of 28.6 MiB (100%)" in seen[-1][1], seen
    expect(page.locator(".flash")).to_contain_text("Uploaded 1 file: big.bin")
    stored = Path(live_server.env["HOURGLASS_INSTANCE"]) / "data" / "users"
    assert [p.stat().st_size for p in stored.rglob("big.bin")] == [SIZE]

    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    with page.expect_download() as download:
        page.locator("#files-table a.download-file").click()
    saved = tmp_path / "downloaded.bin"
    download.value.save_as(saved)
    assert saved.read_bytes() == source.read_bytes()



def test_an_upload_goes_on_after_a_dropped_piece(page, live_server, tmp_path):
    """The second piece's connection is reset once: the page asks the server how much
    arrived and goes on from there; the file arrives whole, in one upload."""
    notebook_id = add_notebook(live_server)
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(20 * 10**6))
    dropped, asked = [], []

    def drop_once(route):
        if route.request.url.endswith(f"offset={8 * 2**20}") and not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route(re.compile(r"/api/v1/uploads/[^/?]+\?offset="), drop_once)
    page.on("request", lambda request: asked.append(request.method)
            if re.search(r"/api/v1/uploads/[^/?]+$", request.url) else None)
    sign_in(page, live_server.url, "renter", "rene", PASSWORD)
    page.wait_for_url("**/renter**")
    page.goto(f"{live_server.url}/renter/notebooks/{notebook_id}/files")
    page.locator("#upload-files").set_input_files(str(source))
    page.get_by_role("button", name="Upload", exact=True).click()
    expect(page.locator("#files-table")).to_contain_text("data.bin", timeout=60_000)
    assert dropped and "GET" in asked  # it was dropped, and the page asked where to go on
    stored = Path(live_server.env["HOURGLASS_INSTANCE"]) / "data" / "users"
    assert [p.read_bytes() == source.read_bytes() for p in stored.rglob("data.bin")] == [True]
    assert query(live_server, "SELECT count(*) FROM uploads") == [(0,)]
