"""The miner builds the JupyterLab image from the Images page, in a real Chromium: the page
follows the running build by itself (htmx polling), the progress bar reaches its end and
the log gets each line once.

The live server's builder is ``tests.image_builders.quick_build`` (the
``HOURGLASS_IMAGE_BUILDER`` seam): four steps, half a second each, no podman.
"""

import pytest
from playwright.sync_api import expect

from tests.conftest import JUPYTER_IMAGE, PASSWORD
from tests.e2e.helpers import heading, menu_links, sign_in

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(live_server_factory):
    return live_server_factory(
        accounts=True, HOURGLASS_IMAGE_BUILDER="tests.image_builders:quick_build").start()


def test_build_shows_progress_and_the_log_as_it_runs(page, server):
    sign_in(page, server.url, "miner", "mina", PASSWORD)
    menu_links(page).get_by_text("Images", exact=True).click()
    expect(heading(page)).to_have_text("Images")
    expect(page.locator("#build-status")).to_have_text("No build since the server started.")

    page.get_by_role("button", name="Build", exact=True).click()
    build = page.locator("#image-build")
    progress = page.locator("#build-progress")
    expect(build).to_have_attribute("data-status", "running")
    expect(page.get_by_role("button", name="Build", exact=True)).to_be_disabled()

    # No reload from here on: the page follows the build by itself.
    expect(build).to_have_attribute("data-status", "succeeded", timeout=15_000)
    expect(progress).to_have_attribute("value", "4")
    expect(progress).to_have_attribute("max", "4")
    expect(page.locator("#build-step")).to_have_text("Step 4 of 4: image")
    log = page.locator("#build-log span")
    expect(log.last).to_have_text(f"image: built {JUPYTER_IMAGE}")
    expect(log).to_have_count(9)  # 2 lines a step and the last one, none twice
    expect(log.first).to_have_text(f"base image: working on {JUPYTER_IMAGE}")
    expect(page.get_by_role("button", name="Build", exact=True)).to_be_enabled()
    poller = page.locator("#build-poller")
    expect(poller).to_be_attached()
    assert poller.get_attribute("hx-get") is None  # polling stopped
