"""The renter's images in a real Chromium on real Podman: a build from a Containerfile whose
log lines appear on the page while the build still runs (htmx polling), then ready with
"no JupyterLab"; a ``podman save`` archive sent through the restartable upload and loaded;
a running notebook saved as an image, and a new notebook started from it (the form offers
it: it has JupyterLab).
"""

import re
import subprocess

import pytest
from playwright.sync_api import expect

from scheduler.podman_service import podman_env
from tests.conftest import PASSWORD, TEST_IMAGE
from tests.e2e.helpers import sign_in
from tests.e2e.test_notebook_work import cloud, create_notebook, screenshots  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.podman]


@pytest.fixture
def server(live_server_factory, test_image):
    return live_server_factory(accounts=True).start()


def test_a_build_log_streams_while_the_build_runs(page, server):
    sign_in(page, server.url, "renter", "rene", PASSWORD)
    expect(page).to_have_url(f"{server.url}/renter/")
    page.goto(f"{server.url}/renter/images#new")
    page.locator("#build-image-form").get_by_label("Name", exact=True).fill("slow one")
    page.get_by_label("Containerfile").fill(
        f"FROM {TEST_IMAGE}\nRUN m=-mark; echo first$m && sleep 4 && echo second$m\n")
    page.locator("#build-image-button").click()
    expect(page.locator("h1")).to_have_text("slow one")
    log = page.locator("#image-log")
    # The step's own line shows "second$m"; the command's output lines say "...-mark".
    expect(log).to_contain_text("first-mark", timeout=30_000)
    # The first line is on the page while the build still sleeps: not ready, no second line.
    assert page.locator('#image-state [data-state="ready"]').count() == 0
    assert "second-mark" not in log.inner_text()
    expect(page.locator('#image-state [data-state="ready"]')).to_be_visible(timeout=60_000)
    expect(log).to_contain_text("second-mark")
    expect(log).to_contain_text("JupyterLab: no")
    expect(page.locator("#image-jupyter")).to_have_text("no: training tasks only")
    lines = [int(n) for n in log.locator("span").evaluate_all(
        "spans => spans.map(s => s.dataset.line)")]
    assert lines == list(range(1, len(lines) + 1))  # each line once, in order
    page.goto(f"{server.url}/renter/images")
    expect(page.locator(".image-table").first).to_contain_text("slow one")


def test_an_archive_uploaded_with_progress_becomes_an_image(page, server, podman_service,
                                                          tmp_path):
    archive = tmp_path / "busybox.tar"
    subprocess.run(["podman", "save", "-o", str(archive), TEST_IMAGE], check=True,
                   env=podman_env(podman_service.conf), capture_output=True)
    sign_in(page, server.url, "renter", "rene", PASSWORD)
    expect(page).to_have_url(f"{server.url}/renter/")
    page.goto(f"{server.url}/renter/images")
    form = page.locator("#upload-image-form")
    form.get_by_label("Name", exact=True).fill("my busybox")
    page.locator("#image-archive").set_input_files(str(archive))
    page.locator("#upload-image-button").click()
    expect(page.locator("h1")).to_have_text("my busybox", timeout=30_000)
    expect(page.locator('#image-state [data-state="ready"]')).to_be_visible(timeout=60_000)
    expect(page.locator("#image-log")).to_contain_text("loaded: localhost/hourglass/u")
    expect(page.locator("#image-jupyter")).to_have_text("no: training tasks only")


def test_a_saved_notebook_image_starts_a_new_notebook(cloud, page, screenshots):  # noqa: F811
    server, _chips = cloud
    screenshots(page, "portal")
    first = create_notebook(page, server, "origin", "lab")
    expect(page.locator(f'button[data-open="{first}"]')).to_be_visible(timeout=90_000)
    page.locator("#save-image-name").fill("my lab image")
    page.locator("#save-image").click()
    expect(page.locator("h1")).to_have_text("my lab image")
    expect(page.locator('#image-state [data-state="ready"]')).to_be_visible(timeout=120_000)
    expect(page.locator("#image-jupyter")).to_have_text("yes: notebooks can use it")
    reference = page.locator("dl.facts code").first.inner_text()
    assert re.fullmatch(r"localhost/hourglass/u\d+/my-lab-image:\d+", reference)

    page.goto(f"{server.url}/renter/notebooks/{first}")
    page.get_by_role("button", name="Stop").click()
    page.goto(f"{server.url}/renter/notebooks/new")
    options = page.locator("#known-images option").evaluate_all("os => os.map(o => o.value)")
    assert reference in options and TEST_IMAGE not in options
    page.get_by_label("Name", exact=True).fill("from image")
    page.locator("#image").fill(reference)
    page.locator("#spec").select_option("lab")
    page.locator("#create-notebook").click()
    expect(page.locator("h1")).to_have_text("from image")
    second = int(page.url.rsplit("/", 1)[1])
    expect(page.locator(f'button[data-open="{second}"]')).to_be_visible(timeout=90_000)
