"""The portal's security headers in a real Chromium: a page on another origin cannot frame a
signed-in renter's API tokens page. (That no page an e2e test opens breaks the
Content-Security-Policy is checked by the ``page`` fixtures of tests/e2e/conftest.py.)"""

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, sign_in
from tests.support import wait_for

pytestmark = pytest.mark.e2e


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def elsewhere(live_server, tmp_path):
    """A page on another origin (another port of 127.0.0.1) framing the portal's API tokens
    page; its URL."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "index.html").write_text(
        "<!doctype html><title>Elsewhere</title><h1>Elsewhere</h1>"
        f'<iframe id="framed" src="{live_server.url}/account/tokens" width="900" '
        'height="600"></iframe>')
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/index.html"
    server.shutdown()
    server.server_close()


def test_another_origin_cannot_frame_a_signed_in_renters_tokens_page(page, live_server,
                                                                     elsewhere, csp_violations):
    sign_in(page, live_server.url, "renter", "rene", PASSWORD)
    expect(page).to_have_url(live_server.url + "/renter/")
    tokens_url = live_server.url + "/account/tokens"

    with page.expect_response(tokens_url) as framed:
        page.goto(elsewhere)
    expect(heading(page)).to_have_text("Elsewhere")
    # The browser sent the session cookie (same site, other port), and the portal answered
    # with rene's page (signed out, it would redirect to /login): only its headers keep it
    # out of the frame.
    answer = framed.value
    assert answer.status == 200 and answer.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    wait_for(lambda: any("frame-ancestors" in seen for seen in csp_violations),
             what="Chromium to refuse the frame")
    frame = page.frame_locator("#framed")
    expect(frame.get_by_role("heading", name="API tokens")).to_have_count(0)
    assert all(f.url != tokens_url for f in page.frames)
    # Refused as expected; anything else stays for the fixture to report.
    csp_violations[:] = [seen for seen in csp_violations if "frame-ancestors" not in seen]

    page.goto(tokens_url)  # opened by itself, the page works
    expect(heading(page)).to_have_text("API tokens")
