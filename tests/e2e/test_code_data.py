"""Code and data in a real Chromium, on real Podman: the renter creates an algorithm from a
zip they upload (the restartable upload with its progress bar), browses it and reads a
file, creates a dataset from a file, then starts a training task in the busybox image that
reads both (/code and /dataset) and sees it succeed, with the files' content in its log.
"""

import zipfile

import pytest
from playwright.sync_api import expect

from scheduler.podman import PodmanBackend
from tests.conftest import PASSWORD
from tests.e2e.helpers import heading, menu_links, query, scheduling_server, sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.podman]


@pytest.fixture
def server(live_server_factory, podman_service, test_image, tmp_path):
    """A live server with its scheduler on, the local node Ready and a spec "small"."""
    (tmp_path / "host").mkdir()
    server, _miner = scheduling_server(live_server_factory, tmp_path / "host")
    yield server
    backend = PodmanBackend(podman_service.url)
    for (container,) in query(server, "SELECT container FROM replicas WHERE container != ''"):
        backend.remove(container)


def test_code_and_data_from_upload_to_a_training_task(page, server, test_image, tmp_path):
    code = tmp_path / "hello.zip"
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("hello.txt", "hello from <b>my</b> code\n")
        archive.writestr("src/train.py", "print('train')\n")
    data = tmp_path / "train.csv"
    data.write_text("1,2,3\n")

    sign_in(page, server.url, "renter", "rene", PASSWORD)
    menu_links(page).get_by_text("Algorithms", exact=True).click()
    expect(heading(page)).to_have_text("Algorithms")
    form = page.locator("#algorithm-form")
    form.get_by_label("Name", exact=True).fill("hello")
    form.locator("#version-files").set_input_files(str(code))
    form.get_by_role("button", name="Create algorithm").click()
    expect(heading(page)).to_have_text("hello")
    expect(page.get_by_role("status").filter(has_text="Created algorithm")).to_be_visible()
    row = page.locator('#version-table tr[data-version="1"]')
    expect(row).to_contain_text("2 files")

    row.get_by_role("link", name="Browse").click()
    page.get_by_role("link", name="hello.txt").click()
    expect(page.get_by_text("hello from <b>my</b> code")).to_be_visible()  # as text

    menu_links(page).get_by_text("Datasets", exact=True).click()
    form = page.locator("#dataset-form")
    form.get_by_label("Name", exact=True).fill("digits")
    form.locator("#version-files").set_input_files(str(data))
    form.get_by_role("button", name="Create dataset").click()
    expect(heading(page)).to_have_text("digits")
    expect(page.locator('#version-table tr[data-version="1"]')).to_contain_text("1 file")

    menu_links(page).get_by_text("Training tasks", exact=True).click()
    page.goto(f"{server.url}/renter/tasks/new")
    form = page.locator("#task-form")
    form.get_by_label("Name", exact=True).fill("reads both")
    form.get_by_label("Image", exact=True).fill(test_image)
    form.get_by_label("Command: one argument per line").fill(
        "cat\nhello.txt\n/dataset/train.csv")
    form.get_by_label("Algorithm version (at /code)").select_option(index=1)
    form.get_by_label("Dataset version (read-only at /dataset)").select_option(index=1)
    form.get_by_label("Spec 1").select_option("small")
    form.get_by_role("button", name="Submit task").click()
    expect(page.locator("#task-code")).to_have_text("hello v1")
    expect(page.locator("#task-dataset")).to_have_text("digits v1")
    expect(page.locator('#task-state [data-state]')).to_have_attribute(
        "data-state", "succeeded", timeout=30_000)

    page.locator('a[data-link="logs"]').first.click()
    expect(page.locator("#log")).to_have_text("hello from <b>my</b> code\n1,2,3\n")
